/work/main/guest-servers/target/x86_64-unknown-linux-gnu/release/deps/spinner-cafe43a735b19286.d: spinner/src/main.rs

/work/main/guest-servers/target/x86_64-unknown-linux-gnu/release/deps/spinner-cafe43a735b19286: spinner/src/main.rs

spinner/src/main.rs:
