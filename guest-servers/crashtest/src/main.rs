//! Fault injection for the supervisor: crashes `echo` in the middle of calls, 100 times
//! (`run=echo,crashtest`, best with `--vcpus 2`).
//!
//! Each round finds `echo` by name, checks that it answers, then sends it `CRASH`: echo
//! works ~1 ms and faults while our call is in progress, so the call must fail with
//! `PartnerGone` (never hang). Meanwhile a second thread (on the other vCPU when there is
//! one) calls echo without pause; its calls queued at the crashing instance must fail with
//! `PartnerGone` too, after which it looks echo up again. The root task restarts echo
//! each time; it checks at the end that frame accounting is back to its baseline.
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use l4_abi::syscall::Error;
use l4_rt::ipc::{self, Msg};
use l4_rt::transfer::CRASH;
use l4_rt::{names, println, sys, thread};

l4_rt::entry!(main);

const ROUNDS: u64 = 100;
const HELPER_STACK: u64 = 0x0000_0050_0000_0000;

static STOP: AtomicBool = AtomicBool::new(false);
static HELPER_ANSWERED: AtomicU64 = AtomicU64::new(0);
static HELPER_CUT_OFF: AtomicU64 = AtomicU64::new(0);
static HELPER_WRONG: AtomicU64 = AtomicU64::new(0);

/// Calls echo until told to stop; reports on `done` (its argument).
fn helper(done: u64) -> u64 {
    while !STOP.load(Ordering::Relaxed) {
        let Ok(Some(echo)) = names::wait_for("echo", 10) else {
            HELPER_WRONG.fetch_add(1, Ordering::Relaxed);
            break;
        };
        while !STOP.load(Ordering::Relaxed) {
            match ipc::call(echo, &Msg::new(7, &[42])) {
                Ok(r) if r.words() == [42] => HELPER_ANSWERED.fetch_add(1, Ordering::Relaxed),
                Err(Error::PartnerGone) => {
                    HELPER_CUT_OFF.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                _ => {
                    HELPER_WRONG.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            };
        }
        let _ = sys::cap_delete(echo);
    }
    let _ = ipc::send(done as u8, &Msg::new(0, &[]));
    0
}

fn main() -> u64 {
    let fail = |why: &str, round: u64| {
        println!("crashtest: FAIL in round {}: {}", round, why);
        STOP.store(true, Ordering::Relaxed);
        let _ = names::done(1);
        1
    };
    let Ok(done) = sys::endpoint_create() else { return fail("no endpoint", 0) };
    let cpu = match thread::spawn(HELPER_STACK, 16, 1, helper, done as u64) {
        Ok(()) => 1,
        Err(Error::BadArgument) => match thread::spawn(HELPER_STACK + 0x10_0000, 16, 0, helper, done as u64) {
            Ok(()) => 0,
            Err(_) => return fail("cannot start the helper thread", 0),
        },
        Err(_) => return fail("cannot start the helper thread", 0),
    };
    println!("crashtest: crashing echo mid-call {} times, a second caller on cpu {}", ROUNDS, cpu);
    let (mut crashes, mut round) = (0, 0);
    while crashes < ROUNDS {
        round += 1;
        if round > 10 * ROUNDS {
            return fail("too many rounds", round);
        }
        let Ok(Some(echo)) = names::wait_for("echo", 10) else { return fail("echo did not come back", round) };
        match ipc::call(echo, &Msg::new(7, &[round])) {
            Ok(r) if r.words() == [round] => {}
            Ok(_) => return fail("a wrong answer", round),
            // The helper's lookup may have raced with the previous crash: try again.
            Err(Error::PartnerGone) => {
                let _ = sys::cap_delete(echo);
                continue;
            }
            Err(e) => return fail(e.name(), round),
        }
        match ipc::call(echo, &Msg::new(CRASH, &[])) {
            Err(Error::PartnerGone) => crashes += 1,
            Ok(_) => return fail("echo answered CRASH", round),
            Err(e) => return fail(e.name(), round),
        }
        let _ = sys::cap_delete(echo);
    }
    STOP.store(true, Ordering::Relaxed);
    if ipc::recv(done).is_err() {
        return fail("the helper did not report", ROUNDS);
    }
    let (answered, cut, wrong) = (
        HELPER_ANSWERED.load(Ordering::Relaxed),
        HELPER_CUT_OFF.load(Ordering::Relaxed),
        HELPER_WRONG.load(Ordering::Relaxed),
    );
    println!(
        "crashtest: {} crashes mid-call, each call to the crashing echo failed with PartnerGone; \
         the second caller got {} answers and {} PartnerGone, {} other results; no call hung",
        ROUNDS, answered, cut, wrong
    );
    let status = if wrong == 0 { 0 } else { 1 };
    let _ = names::done(status);
    status
}
