//! The same kernel ELF and boot archive under QEMU's PVH loader (TCG): the same banner, and
//! the same user space, entered there through `syscall` (QEMU implements it) while PVM
//! hosts use `int3`. This is how CI proves the `syscall` path.

mod common;

use std::time::Duration;

use common::*;

/// Boots the kernel under QEMU with two CPUs.
fn run_qemu(append: &str) -> Run {
    run(qemu(2, append), Duration::from_secs(120))
}

/// The banner lines that do not depend on the machine.
const BANNER: [&str; 4] = [
    "l4 kernel 0.1.0 (x86_64), booted via PVH, start info at 0x",
    "memory map:\n  [0x",
    "usable RAM: ",
    "modules: 1\n  0: [0x",
];

/// What the default user space prints on every host.
const USER_SPACE: [&str; 6] = [
    "l4: root task 'root' started",
    "root: 'echo' registered as 'echo'",
    "client: 100/100 echo round trips correct",
    "root: task 'faulty' faulted: vector 14",
    "root: all done: 2 succeeded, 0 failed, 1 faulted",
    "after stopping them: back to baseline",
];

#[test]
fn same_kernel_and_servers_run_under_qemu_through_syscall() {
    let q = run_qemu("hello from qemu");
    // isa-debug-exit: status = (value << 1) | 1, so the guest's 0 is 1.
    q.assert_code(1)
        .assert_stdout_has("cmdline: 'hello from qemu'")
        .assert_stdout_has("cpus: 2 (local APIC IDs 0 1)")
        .assert_stdout_has("l4: user entry: syscall\n");
    let l = l4vmm(&["--cmdline", "hello from qemu"]);
    l.assert_code(0);
    for line in BANNER.iter().chain(USER_SPACE.iter()) {
        q.assert_stdout_has(line);
        l.assert_stdout_has(line);
    }
}

#[test]
fn the_int3_entry_can_be_forced_and_works_under_qemu_too() {
    let q = run_qemu("entry=int3");
    q.assert_code(1).assert_stdout_has("l4: user entry: int3");
    for line in USER_SPACE {
        q.assert_stdout_has(line);
    }
}
