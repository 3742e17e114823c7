//! The ring-0 instruction-count window (the `Trace` call): per CPU, between a
//! `CountStart` and a `CountStop` marker the VMM counts the ring-0 instructions this CPU
//! runs (vmm/src/devices/counter.rs).
//!
//! Invariants:
//! - A window never stops preemption for good. While one is open the periodic tick is off
//!   (a tick inside the window would put the timer handler in every count) and a one-shot
//!   watchdog of [`WATCHDOG`] runs instead; if it fires before the window is closed the
//!   window ends there, its count is spoiled (reads as unavailable) and the periodic tick
//!   resumes. So a thread that opens a window and spins, or dies, or is switched away,
//!   costs the CPU at most one watchdog period without preemption.
//! - A window opens only when no tick is pending: a pending tick would be delivered at
//!   the window's first user instruction and land in the count, or fire the watchdog.
//! - Only this CPU touches its own state (the array is indexed by `this_cpu`), with
//!   interrupts off (trap context).

use core::sync::atomic::{AtomicU8, Ordering};

use super::gdt::MAX_CPUS;
use super::{apic, percpu, port};

/// How long a window may stay open, in local APIC bus clocks divided by 16 (KVM's bus runs
/// at 1 GHz): 10 s. Far longer than any window `bench` counts (the longest, two 64 KiB
/// copies, takes about a second of single-stepping on a PVM host), short enough that a
/// window left open is a pause, not a hang.
pub const WATCHDOG: u32 = 625_000_000;

const CLOSED: u8 = 0;
const OPEN: u8 = 1;
/// The watchdog ended the window: its count is not a count of anything.
const SPOILED: u8 = 2;

static STATE: [AtomicU8; MAX_CPUS] = [const { AtomicU8::new(CLOSED) }; MAX_CPUS];

fn state() -> &'static AtomicU8 {
    &STATE[percpu::this_cpu()]
}

/// Opens this CPU's window; `false` (nothing changed) if the timer has a tick pending:
/// the caller is to try again once it has been delivered.
pub fn open() -> bool {
    // The watchdog first: from here no new periodic tick can become pending.
    apic::start_watchdog(WATCHDOG);
    if apic::timer_pending() {
        super::start_timer();
        return false;
    }
    state().store(OPEN, Ordering::Relaxed);
    port::outb(l4_abi::port::MARKER, l4_abi::port::Marker::CountStart as u8);
    true
}

/// Closes this CPU's window, if one is open, and restarts the periodic tick.
pub fn close() {
    if state().load(Ordering::Relaxed) == OPEN {
        port::outb(l4_abi::port::MARKER, l4_abi::port::Marker::CountStop as u8);
        state().store(CLOSED, Ordering::Relaxed);
        super::start_timer();
    }
}

/// The last window's count (all-ones: unavailable, as the VMM says when it cannot count).
pub fn read() -> u64 {
    if state().load(Ordering::Relaxed) == SPOILED {
        return u64::from(u32::MAX);
    }
    u64::from(port::inl(l4_abi::port::MARKER))
}

/// This CPU's window: 0 closed, 1 open, 2 ended by the watchdog (until the next opens).
pub fn status() -> u64 {
    u64::from(state().load(Ordering::Relaxed))
}

/// A timer interrupt on this CPU (before the tick is handled): if a window is open, this
/// is its watchdog firing. The window ends, spoiled, and the periodic tick resumes.
pub fn on_timer() {
    if state().load(Ordering::Relaxed) == OPEN {
        port::outb(l4_abi::port::MARKER, l4_abi::port::Marker::CountStop as u8);
        state().store(SPOILED, Ordering::Relaxed);
        super::start_timer();
    }
}
