//! The batched ring path (guest-servers/ringsrv, ringtest): ordering and user_data, batches
//! of 1 to 256, index wrap-around past 2^32, 3000 submit/sleep cycles without a lost
//! wake-up, backpressure, bad entries, garbage indices, a hostile client's forged sizes,
//! entry count, spin count and a full completion ring, in kernel-entry and polling mode,
//! with 1 and 2 vCPUs, under l4vmm and QEMU.

mod common;

use std::time::Duration;

use common::*;

fn assert_ringtest_passed(out: &str) {
    for line in [
        "ringtest: ok order, user_data, batches 1-256 (kernel-entry)",
        "ringtest: ok index wrap-around past 2^32 (kernel-entry)",
        "ringtest: ok 3000 submit/sleep cycles, no lost wake-up (kernel-entry)",
        "ringtest: ok order, user_data, batches 1-256 (polling)",
        "ringtest: ok index wrap-around past 2^32 (polling)",
        "ringtest: ok 3000 submit/sleep cycles, no lost wake-up (polling)",
        "ringtest: ok backpressure: a full ring takes what fits",
        "ringtest: ok bad entries get error completions, the server survives",
        "ringtest: ok garbage indices: the server drops the ring and serves the next",
        "ringtest: ok a forged data-page count is not believed",
        "ringtest: ok a scribbled entry count is refused and leaves nothing mapped",
        "ringtest: ok a ring without data pages leaves nothing mapped",
        "ringtest: ok a polling client that asks for endless spinning and leaves does not keep the server",
        "ringtest: ok a client that forges a full completion ring and never reaps does not keep the server",
        "ringtest: ok capabilities sent with anything but a ring setup are not kept",
        "ringtest: 0 failed",
    ] {
        assert!(out.contains(line), "missing {line:?} in\n{out}");
    }
}

#[test]
fn ring_suite_on_one_vcpu() {
    let r = l4vmm_within(&["--cmdline", "run=ringsrv,ringtest", "--timeout", "600"], Duration::from_secs(700));
    r.assert_code(0);
    assert_ringtest_passed(&r.stdout);
}

#[test]
fn ring_suite_with_the_server_polling_on_another_vcpu() {
    let r = l4vmm_within(
        &["--vcpus", "2", "--cmdline", "run=ringsrv,ringtest pin=ringsrv:1", "--timeout", "600"],
        Duration::from_secs(700),
    );
    r.assert_code(0).assert_stdout_has("root: started 'ringsrv' on cpu 1");
    assert_ringtest_passed(&r.stdout);
}

#[test]
fn ring_suite_under_qemu_smp() {
    let cmd = qemu(2, "run=ringsrv,ringtest pin=ringsrv:1");
    let r = run(cmd, Duration::from_secs(600));
    r.assert_code(1);
    assert_ringtest_passed(&r.stdout);
}

#[test]
fn the_demo_shows_the_ring_path_next_to_the_synchronous_one() {
    let r = l4vmm(&["--vcpus", "2", "--cmdline", "pin=ringsrv:1"]);
    r.assert_code(0).assert_stdout_has("ipcbench: every answer checked out");
    for path in ["ring", "ring-poll"] {
        let batches: Vec<&str> = r
            .stdout
            .lines()
            .filter_map(|l| l.strip_prefix("ipcbench: "))
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .filter(|w| w.len() == 7 && w[0] == path)
            .map(|w| w[1])
            .collect();
        assert_eq!(batches, ["1", "4", "16", "64", "256"], "{path} rows in\n{}", r.stdout);
    }
}
