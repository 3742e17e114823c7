//! A hostile task for the instruction-count window (`Trace`, tests/robust.rs), which stops
//! preemption on its CPU while it is open.
//!
//! Without a TRACE right (the default: root gives it only to tasks named in `trace=`), it
//! tries to open the window through every capability it holds and through the
//! machine's own slot number, and asks root for the right: every attempt must be refused.
//! With it (`trace=tracetest arg=tracetest:1`, one vCPU), it opens the window and waits,
//! entering the kernel, until the kernel's watchdog ends it (the count is then
//! unavailable); then it opens the window once more and spins in user mode for ever,
//! entering the kernel never again. A second thread of the same priority, which waits
//! until the window is open, reports to root: it can only run if the watchdog gives the
//! CPU back (before the watchdog, the run hung here until l4vmm's timeout). It prints `tracetest: ok NAME` or `tracetest: FAIL NAME` per check, and
//! reports 0 only if all passed.
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use l4_abi::args as a;
use l4_abi::syscall::Error;
use l4_rt::{names, println, sys, thread};

l4_rt::entry!(main);

const STACK_VA: u64 = 0x0000_0050_0000_0000;
/// The main thread has the window open and spins.
static SPINNING: AtomicBool = AtomicBool::new(false);
/// The checks that failed before it did.
static FAILED: AtomicU64 = AtomicU64::new(0);

/// The second thread: reports once the main thread spins with the window open.
fn reporter(_: u64) -> u64 {
    while !SPINNING.load(Ordering::Acquire) {
        sys::yield_now();
    }
    println!("tracetest: ok another thread ran while the window was left open");
    let _ = names::done(FAILED.load(Ordering::Relaxed));
    0
}

fn check(failed: &mut u32, what: &str, ok: bool) {
    if ok {
        println!("tracetest: ok {}", what);
    } else {
        *failed += 1;
        println!("tracetest: FAIL {}", what);
    }
}

fn main() -> u64 {
    let mut failed = 0;
    if l4_rt::start_arg() != 1 {
        // Slot 0 is root's endpoint, 1 the slot root's machine capability has in root's
        // table; the rest are empty or whatever the runtime made.
        let opened = (0..=u8::MAX).filter(|&s| sys::call_ok(a::Trace { machine: s as u64, op: 0 }).is_ok()).count();
        check(&mut failed, "no slot opens the count window", opened == 0);
        let nothing = sys::call_ok(a::Trace { machine: 0, op: 2 });
        check(&mut failed, "no slot reads a count", nothing.is_err());
        let asked = names::trace();
        check(&mut failed, "root refuses the TRACE right with NoRights", asked == Err(Error::NoRights));
        let _ = names::done(failed as u64);
        return failed as u64;
    }
    let Ok(m) = names::trace() else {
        println!("tracetest: FAIL root gave no TRACE right (run with trace=tracetest)");
        let _ = names::done(1);
        return 1;
    };
    let opened = sys::count_start(m);
    check(&mut failed, "the window opens with the TRACE right", opened && sys::count_window(m) == Ok(1));
    let _ = sys::count_stop(m);
    check(&mut failed, "and closes", sys::count_window(m) == Ok(0));
    // Left open: only the watchdog ends it (each poll enters the kernel, which does not).
    let reopened = sys::count_start(m);
    let mut polls = 0u64;
    while reopened && sys::count_window(m) == Ok(1) {
        polls += 1;
    }
    check(&mut failed, "the watchdog ends a window left open", reopened && sys::count_window(m) == Ok(2));
    check(&mut failed, "and its count reads as unavailable", sys::count_stop(m).is_none());
    println!("tracetest: {} kernel entries in the window before the watchdog ended it", polls);
    FAILED.store(failed as u64, Ordering::Relaxed);
    if let Err(e) = thread::spawn(STACK_VA, 4, 0, reporter, 0) {
        println!("tracetest: FAIL no second thread: {}", e.name());
        let _ = names::done(1);
        return 1;
    }
    // Open for good, in user mode: nothing but the watchdog can take this CPU back.
    if !sys::count_start(m) {
        println!("tracetest: FAIL the window did not open again");
        let _ = names::done(1);
        return 1;
    }
    println!("tracetest: window open, spinning");
    SPINNING.store(true, Ordering::Release);
    loop {
        core::hint::spin_loop();
    }
}
