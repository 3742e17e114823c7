//! A task that never gives up the CPU: it registers as "spinner" and then spins without a
//! system call. Tasks at its priority still run because the timer preempts it; the client
//! waits for it before starting its work, so it finishes only if preemption works.
#![no_std]
#![no_main]

use l4_rt::{names, println};

l4_rt::entry!(main);

fn main() -> u64 {
    let _ = names::register("spinner", l4_abi::bootinfo::PARENT_SLOT);
    println!("spinner: spinning without system calls");
    loop {
        core::hint::spin_loop();
    }
}
