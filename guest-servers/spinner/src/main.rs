//! A task that never gives up the CPU: it registers as "spinner" and then spins without a
//! system call. Tasks at its priority still run because the timer preempts it; the client
//! waits for it before starting its work, so it finishes only if preemption works.
//!
//! It spins [`DEPTH`] calls deep, in a real call chain, so that a debugger interrupting it
//! has a known backtrace to show (tests/gdb.rs checks it). Started with `arg=spinner:1` it
//! does not register, so the root task waits for it for ever: a guest that spins in user
//! mode until it is killed.
#![no_std]
#![no_main]

use l4_rt::{names, println};

l4_rt::entry!(main);

/// How many calls of [`spin`] deep the spinning happens.
const DEPTH: u32 = 4;

fn main() -> u64 {
    // Said before registering: once the client finds the name, this line is out (a tick
    // between the registration and the line let the client go first, once, on the
    // nested kvm_amd host).
    println!("spinner: spinning without system calls");
    if l4_rt::start_arg() != 1 {
        // An endpoint of its own (nobody calls it: the name says it is there).
        if let Ok(ep) = l4_rt::sys::endpoint_create() {
            let _ = names::register("spinner", ep);
        }
    }
    u64::from(spin(DEPTH))
}

/// Calls itself `depth` more times, then spins forever.
#[inline(never)]
fn spin(depth: u32) -> u32 {
    if depth == 0 {
        loop {
            core::hint::spin_loop();
        }
    }
    // Used after the call, so the call stays a call (no tail call, no loop).
    core::hint::black_box(spin(core::hint::black_box(depth - 1))) + 1
}
