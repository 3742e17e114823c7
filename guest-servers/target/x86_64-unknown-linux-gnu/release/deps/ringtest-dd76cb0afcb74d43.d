/work/main/guest-servers/target/x86_64-unknown-linux-gnu/release/deps/ringtest-dd76cb0afcb74d43.d: ringtest/src/main.rs

/work/main/guest-servers/target/x86_64-unknown-linux-gnu/release/deps/ringtest-dd76cb0afcb74d43: ringtest/src/main.rs

ringtest/src/main.rs:
