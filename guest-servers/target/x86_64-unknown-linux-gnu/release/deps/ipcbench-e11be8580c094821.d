/work/main/guest-servers/target/x86_64-unknown-linux-gnu/release/deps/ipcbench-e11be8580c094821.d: ipcbench/src/main.rs

/work/main/guest-servers/target/x86_64-unknown-linux-gnu/release/deps/ipcbench-e11be8580c094821: ipcbench/src/main.rs

ipcbench/src/main.rs:
