//! Several vCPUs: the application processors come up through INIT/SIPI (under l4vmm and
//! under QEMU), servers pinned to different vCPUs pass the whole in-guest IPC suite
//! (10,000 messages of each kind, copy-on-write breaks on both sides), and idle vCPUs halt.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn assert_ipctest_passed(out: &str) {
    for line in [
        "ipctest: ok order",
        "ipctest: ok cow isolation both ways, unwritten pages stay shared",
        "ipctest: ok shared mapping visible both ways",
        "ipctest: ok no frame leaks after 10000 messages of each kind",
        "ipctest: 0 failed",
    ] {
        assert!(out.contains(line), "missing {line:?} in\n{out}");
    }
    assert!(!out.contains("ipctest: FAIL"), "{out}");
}

#[test]
fn servers_pinned_to_different_vcpus_pass_the_ipc_suite() {
    let r = l4vmm_within(
        &["--vcpus", "2", "--cmdline", "run=echo,ipctest pin=echo:1", "--timeout", "900"],
        Duration::from_secs(1000),
    );
    r.assert_code(0).assert_stdout_has("l4: 2 cpus online").assert_stdout_has("root: started 'echo' on cpu 1");
    assert_ipctest_passed(&r.stdout);
}

#[test]
fn qemu_smp_starts_the_second_cpu_and_passes_the_ipc_suite() {
    let cmd = qemu(2, "run=echo,ipctest pin=echo:1");
    let r = run(cmd, Duration::from_secs(600));
    r.assert_code(1).assert_stdout_has("l4: 2 cpus online").assert_stdout_has("root: started 'echo' on cpu 1");
    assert_ipctest_passed(&r.stdout);
}

#[test]
fn idle_vcpus_halt_instead_of_spinning() {
    require_kvm();
    // Four vCPUs, all work on the first: if the other three spun, l4vmm would use about
    // four CPUs' worth of time; halted, about one.
    let start = Instant::now();
    let child = Command::new(l4vmm_path())
        .args(["--vcpus", "4", "--timeout", "120"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn l4vmm");
    let mut status = 0;
    // SAFETY: rusage is plain data filled in by wait4, which we check.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child and writes into valid locals.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as i32);
    let wall = start.elapsed().as_secs_f64();
    let cpu = usage.ru_utime.tv_sec as f64
        + usage.ru_utime.tv_usec as f64 / 1e6
        + usage.ru_stime.tv_sec as f64
        + usage.ru_stime.tv_usec as f64 / 1e6;
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "status {status}");
    assert!(cpu < 2.0 * wall, "l4vmm used {cpu:.2} s of CPU in {wall:.2} s with 3 idle vCPUs: idle vCPUs must halt");
}

#[test]
fn forcing_the_entry_mechanism_works_with_several_cpus() {
    // The forced path skips the probe; the second CPU must still come up (no lock taken
    // twice) and the demo run through.
    l4vmm(&["--vcpus", "2", "--cmdline", "entry=int3"])
        .assert_code(0)
        .assert_stdout_has("l4: user entry: int3")
        .assert_stdout_has("l4: 2 cpus online")
        .assert_stdout_has("root: all done: 2 succeeded, 0 failed, 1 faulted");
}
