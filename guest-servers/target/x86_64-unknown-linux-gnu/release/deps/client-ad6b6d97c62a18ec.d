/work/main/guest-servers/target/x86_64-unknown-linux-gnu/release/deps/client-ad6b6d97c62a18ec.d: client/src/main.rs

/work/main/guest-servers/target/x86_64-unknown-linux-gnu/release/deps/client-ad6b6d97c62a18ec: client/src/main.rs

client/src/main.rs:
