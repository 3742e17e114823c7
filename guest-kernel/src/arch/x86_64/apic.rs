//! The local APIC (xAPIC, MMIO through the direct map): the periodic timer that preempts
//! user code.

use super::PHYS_OFFSET;
use crate::arch::x86_64::entry::{SPURIOUS_VECTOR, TIMER_VECTOR};

const BASE: u64 = PHYS_OFFSET + 0xfee0_0000;
const IRR: u64 = 0x200;
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

fn read(reg: u64) -> u32 {
    // SAFETY: as for `write`.
    unsafe { ((BASE + reg) as *const u32).read_volatile() }
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

/// Replaces the periodic timer with one tick, `ticks` bus clocks divided by 16 from now.
pub fn start_watchdog(ticks: u32) {
    write(TIMER_DIV, 0x3); // divide by 16
    write(LVT_TIMER, TIMER_VECTOR as u32);
    write(TIMER_INIT, ticks);
}

/// Whether a timer interrupt is pending (requested, not yet delivered).
pub fn timer_pending() -> bool {
    let irr = IRR + (TIMER_VECTOR / 32) * 0x10;
    read(irr) & (1 << (TIMER_VECTOR % 32)) != 0
}

/// Masks (`true`) or unmasks the timer interrupt, keeping its vector and mode.
pub fn mask_timer(masked: bool) {
    write(LVT_TIMER, TIMER_VECTOR as u32 | (1 << 17) | if masked { 1 << 16 } else { 0 });
}
