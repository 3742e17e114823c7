/work/main/guest-servers/target/x86_64-unknown-linux-gnu/release/deps/l4_rt-f619f3a99ef21e06.d: rt/src/lib.rs rt/src/io.rs rt/src/ipc.rs rt/src/mem.rs rt/src/names.rs rt/src/ring.rs rt/src/ringclient.rs rt/src/service.rs rt/src/sys.rs rt/src/time.rs rt/src/thread.rs rt/src/transfer.rs

/work/main/guest-servers/target/x86_64-unknown-linux-gnu/release/deps/libl4_rt-f619f3a99ef21e06.rlib: rt/src/lib.rs rt/src/io.rs rt/src/ipc.rs rt/src/mem.rs rt/src/names.rs rt/src/ring.rs rt/src/ringclient.rs rt/src/service.rs rt/src/sys.rs rt/src/time.rs rt/src/thread.rs rt/src/transfer.rs

/work/main/guest-servers/target/x86_64-unknown-linux-gnu/release/deps/libl4_rt-f619f3a99ef21e06.rmeta: rt/src/lib.rs rt/src/io.rs rt/src/ipc.rs rt/src/mem.rs rt/src/names.rs rt/src/ring.rs rt/src/ringclient.rs rt/src/service.rs rt/src/sys.rs rt/src/time.rs rt/src/thread.rs rt/src/transfer.rs

rt/src/lib.rs:
rt/src/io.rs:
rt/src/ipc.rs:
rt/src/mem.rs:
rt/src/names.rs:
rt/src/ring.rs:
rt/src/ringclient.rs:
rt/src/service.rs:
rt/src/sys.rs:
rt/src/time.rs:
rt/src/thread.rs:
rt/src/transfer.rs:
