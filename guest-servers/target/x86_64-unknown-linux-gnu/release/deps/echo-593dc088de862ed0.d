/work/main/guest-servers/target/x86_64-unknown-linux-gnu/release/deps/echo-593dc088de862ed0.d: echo/src/main.rs

/work/main/guest-servers/target/x86_64-unknown-linux-gnu/release/deps/echo-593dc088de862ed0: echo/src/main.rs

echo/src/main.rs:
