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

/// `bench/tcg_count.py`, the way docs/ARCHITECTURE.md and the README count the fast path
/// next to seL4's (QEMU TCG, gdb single-stepping each half from `syscall_entry` back to
/// user mode), still works and counts both halves of the 8-word round trip; the halves
/// add up to the round trip it prints, and each is a fast path's length (it would be
/// thousands on the slow path with its scheduler pass).
#[test]
fn the_fast_path_can_be_counted_under_qemu_the_way_sel4_s_was() {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench/tcg_count.py");
    let mut cmd = std::process::Command::new("gdb");
    cmd.args(["-q", "-batch", "-x"]).arg(&script).env("L4_KERNEL", kernel_elf()).env("L4_ARCHIVE", boot_archive());
    let r = run(cmd, Duration::from_secs(300));
    r.assert_code(0);
    let count = |what: &str| -> u64 {
        let line = r
            .stdout
            .lines()
            .find(|l| l.starts_with(&format!("tcg-count: {what}")))
            .unwrap_or_else(|| panic!("no {what:?} line\n--- stdout\n{}\n--- stderr\n{}", r.stdout, r.stderr));
        let n = line.split(": ").nth(2).and_then(|s| s.split(' ').next()).and_then(|s| s.parse().ok());
        n.unwrap_or_else(|| panic!("no count in {line:?}"))
    };
    let (call, reply, rt) = (count("Call (8 words"), count("ReplyRecv (8 words"), count("round trip"));
    assert_eq!(call + reply, rt);
    for half in [call, reply] {
        assert!((100..400).contains(&half), "a fast-path half of {half} instructions");
    }
}
