/work/main/guest-servers/target/x86_64-unknown-linux-gnu/release/deps/ringsrv-a9680ca3dcd5300c.d: ringsrv/src/main.rs

/work/main/guest-servers/target/x86_64-unknown-linux-gnu/release/deps/ringsrv-a9680ca3dcd5300c: ringsrv/src/main.rs

ringsrv/src/main.rs:
