/work/main/guest-servers/target/x86_64-unknown-linux-gnu/release/deps/l4_abi-12a3035b8287d88d.d: /work/main/abi/src/lib.rs /work/main/abi/src/bootinfo.rs /work/main/abi/src/exit.rs /work/main/abi/src/layout.rs /work/main/abi/src/port.rs /work/main/abi/src/ring.rs /work/main/abi/src/syscall.rs

/work/main/guest-servers/target/x86_64-unknown-linux-gnu/release/deps/libl4_abi-12a3035b8287d88d.rlib: /work/main/abi/src/lib.rs /work/main/abi/src/bootinfo.rs /work/main/abi/src/exit.rs /work/main/abi/src/layout.rs /work/main/abi/src/port.rs /work/main/abi/src/ring.rs /work/main/abi/src/syscall.rs

/work/main/guest-servers/target/x86_64-unknown-linux-gnu/release/deps/libl4_abi-12a3035b8287d88d.rmeta: /work/main/abi/src/lib.rs /work/main/abi/src/bootinfo.rs /work/main/abi/src/exit.rs /work/main/abi/src/layout.rs /work/main/abi/src/port.rs /work/main/abi/src/ring.rs /work/main/abi/src/syscall.rs

/work/main/abi/src/lib.rs:
/work/main/abi/src/bootinfo.rs:
/work/main/abi/src/exit.rs:
/work/main/abi/src/layout.rs:
/work/main/abi/src/port.rs:
/work/main/abi/src/ring.rs:
/work/main/abi/src/syscall.rs:
