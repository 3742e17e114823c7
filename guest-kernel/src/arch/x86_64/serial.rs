//! The 16550 UART on COM1, polled, output only (for now).
//!
//! Every register access is a VM exit (~10 µs on PVM hosts), so the driver does the
//! minimum: a short init and, per byte, one status read and one data write.

use super::port::{inb, outb};
use l4_abi::port::COM1;

const THR: u16 = COM1; // transmit holding register (DLAB=0)
const IER: u16 = COM1 + 1; // interrupt enable (DLAB=0)
const FCR: u16 = COM1 + 2; // FIFO control
const LCR: u16 = COM1 + 3; // line control
const MCR: u16 = COM1 + 4; // modem control
const LSR: u16 = COM1 + 5; // line status
const LSR_THR_EMPTY: u8 = 0x20;

/// 115200 8N1, FIFOs on, interrupts off.
pub fn init() {
    outb(IER, 0x00);
    outb(LCR, 0x80); // DLAB: the next two writes set the divisor
    outb(COM1, 0x01); // 115200 baud
    outb(COM1 + 1, 0x00);
    outb(LCR, 0x03); // 8N1
    outb(FCR, 0x07); // enable and clear FIFOs
    outb(MCR, 0x03); // DTR | RTS
}

/// Writes bytes, waiting for the transmitter before each one.
pub fn write_bytes(bytes: &[u8]) {
    for &b in bytes {
        // A real or emulated UART that never drains would hang us here; both l4vmm's and
        // QEMU's report an empty transmitter at once, so bound the wait and drop the byte.
        let mut spins = 0u32;
        while inb(LSR) & LSR_THR_EMPTY == 0 && spins < 1000 {
            spins += 1;
        }
        outb(THR, b);
    }
}
