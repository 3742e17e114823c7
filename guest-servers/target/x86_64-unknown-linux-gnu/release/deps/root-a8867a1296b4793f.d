/work/main/guest-servers/target/x86_64-unknown-linux-gnu/release/deps/root-a8867a1296b4793f.d: root/src/main.rs

/work/main/guest-servers/target/x86_64-unknown-linux-gnu/release/deps/root-a8867a1296b4793f: root/src/main.rs

root/src/main.rs:
