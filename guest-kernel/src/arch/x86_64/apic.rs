//! The local APIC (xAPIC, MMIO through the direct map): the periodic timer that preempts
//! user code.

use super::PHYS_OFFSET;
use crate::arch::x86_64::entry::{SPURIOUS_VECTOR, TIMER_VECTOR};

const BASE: u64 = PHYS_OFFSET + 0xfee0_0000;
const TPR: u64 = 0x80;
const EOI: u64 = 0xb0;
const SVR: u64 = 0xf0;
const LVT_TIMER: u64 = 0x320;
const TIMER_INIT: u64 = 0x380;
const TIMER_DIV: u64 = 0x3e0;

fn write(reg: u64, v: u32) {
    // SAFETY: the local APIC page is mapped uncached in the direct map; these are its
    // architectural registers.
    unsafe { ((BASE + reg) as *mut u32).write_volatile(v) };
}

/// Software-enables this CPU's local APIC (needed to send and receive IPIs).
pub fn enable() {
    write(SVR, 0x100 | SPURIOUS_VECTOR as u32);
}

/// Enables the APIC and starts the timer: periodic, `ticks` bus clocks (KVM's APIC bus
/// runs at 1 GHz, so 10_000_000 is 10 ms).
pub fn start_timer(ticks: u32) {
    write(SVR, 0x100 | SPURIOUS_VECTOR as u32);
    write(TIMER_DIV, 0xb); // divide by 1
    write(LVT_TIMER, TIMER_VECTOR as u32 | (1 << 17));
    write(TIMER_INIT, ticks);
}

/// Acknowledges the interrupt being handled.
pub fn eoi() {
    write(EOI, 0);
}

/// Holds back (`true`) or lets through the timer's priority class with the task-priority
/// register: unlike the LVT mask, this also keeps a tick that is already pending in the
/// IRR from being delivered. IPIs are in a higher class and still arrive.
pub fn hold_timer(held: bool) {
    write(TPR, if held { (TIMER_VECTOR as u32) & 0xf0 } else { 0 });
}

/// Masks (`true`) or unmasks the timer interrupt, keeping its vector and mode.
pub fn mask_timer(masked: bool) {
    write(LVT_TIMER, TIMER_VECTOR as u32 | (1 << 17) | if masked { 1 << 16 } else { 0 });
}
