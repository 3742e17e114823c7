//! The in-guest IPC tests (guest-servers/ipctest), asserted from the host: ordering,
//! badges, every error, copy-on-write isolation both ways with unwritten pages still
//! shared, shared mappings both ways, grant, and no frame leak after 10,000 messages of
//! each kind. Run under l4vmm (int3 entry on PVM hosts) and under QEMU (syscall entry).

mod common;

use std::time::Duration;

use common::*;

const CHECKS: [&str; 10] = [
    "ipctest: ok user rflags do not reach the kernel",
    "ipctest: ok order",
    "ipctest: ok key-value store over synchronous IPC",
    "ipctest: ok badges",
    "ipctest: ok errors",
    "ipctest: ok cow isolation both ways, unwritten pages stay shared",
    "ipctest: ok cow of 4 MiB",
    "ipctest: ok shared mapping visible both ways",
    "ipctest: ok grant moves the pages",
    "ipctest: ok no frame leaks after 10000 messages of each kind",
];

fn assert_all_pass(r: &Run) {
    for c in CHECKS {
        r.assert_stdout_has(c);
    }
    r.assert_stdout_has("ipctest: 0 failed").assert_stdout_has("root: 'ipctest' finished with status 0");
    assert!(!r.stdout.contains("ipctest: FAIL"), "{}", r.stdout);
    for kind in ["register", "ipcbuf", "cow", "shared", "grant"] {
        let line = r
            .stdout
            .lines()
            .find(|l| l.starts_with(&format!("ipctest: 10000 x {kind}: frames in use ")))
            .unwrap_or_else(|| panic!("no soak line for {kind}"));
        let nums: Vec<&str> = line.rsplit(' ').take(3).collect();
        assert_eq!(nums[0], nums[2], "frame accounting back to baseline: {line}");
    }
}

#[test]
fn ipc_tests_pass_in_the_guest() {
    let r = l4vmm_within(&["--cmdline", "run=echo,ipctest", "--timeout", "600"], Duration::from_secs(700));
    r.assert_code(0);
    assert_all_pass(&r);
}

#[test]
fn ipc_tests_pass_under_qemu_through_syscall() {
    let cmd = qemu(1, "run=echo,ipctest");
    let r = run(cmd, Duration::from_secs(600));
    r.assert_code(1).assert_stdout_has("l4: user entry: syscall\n");
    assert_all_pass(&r);
}
