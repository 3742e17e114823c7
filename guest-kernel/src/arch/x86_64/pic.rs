//! The legacy 8259 PICs: moved out of the exception vectors and masked.
//!
//! A BIOS (QEMU's SeaBIOS) leaves the master PIC delivering IRQ 0 (its PIT timer) at
//! vector 8, which would look like a double fault. The kernel uses the local APIC timer
//! only, so the PICs are remapped to vectors 0xe0-0xef (all routed to the spurious
//! handler) and every IRQ is masked.

use super::port::outb;

/// Vector base for the master PIC (the slave uses base + 8).
pub const BASE: u8 = 0xe0;

pub fn disable() {
    outb(0x20, 0x11); // ICW1: initialise, ICW4 follows
    outb(0xa0, 0x11);
    outb(0x21, BASE); // ICW2: vector offsets
    outb(0xa1, BASE + 8);
    outb(0x21, 4); // ICW3: slave on IRQ 2
    outb(0xa1, 2);
    outb(0x21, 1); // ICW4: 8086 mode
    outb(0xa1, 1);
    outb(0x21, 0xff); // mask everything
    outb(0xa1, 0xff);
}
