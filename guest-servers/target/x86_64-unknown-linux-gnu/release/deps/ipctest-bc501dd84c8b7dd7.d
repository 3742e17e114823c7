/work/main/guest-servers/target/x86_64-unknown-linux-gnu/release/deps/ipctest-bc501dd84c8b7dd7.d: ipctest/src/main.rs

/work/main/guest-servers/target/x86_64-unknown-linux-gnu/release/deps/ipctest-bc501dd84c8b7dd7: ipctest/src/main.rs

ipctest/src/main.rs:
