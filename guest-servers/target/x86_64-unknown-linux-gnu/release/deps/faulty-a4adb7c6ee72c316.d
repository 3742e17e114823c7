/work/main/guest-servers/target/x86_64-unknown-linux-gnu/release/deps/faulty-a4adb7c6ee72c316.d: faulty/src/main.rs

/work/main/guest-servers/target/x86_64-unknown-linux-gnu/release/deps/faulty-a4adb7c6ee72c316: faulty/src/main.rs

faulty/src/main.rs:
