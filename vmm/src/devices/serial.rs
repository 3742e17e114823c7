//! The COM1 16550 UART (vm-superio), output to stdout, input from stdin, interrupts on
//! IRQ 4 through an irqfd into the in-kernel irqchip.

use std::io::{Stdout, Write};
use std::sync::Mutex;

use kvm_ioctls::VmFd;
use vm_superio::serial::NoEvents;
use vm_superio::{Serial, Trigger};
use vmm_sys_util::eventfd::EventFd;

use crate::error::{Error, Result};

/// COM1's legacy interrupt line.
const COM1_IRQ: u32 = 4;

/// Raises the UART's interrupt by writing its irqfd.
pub struct IrqTrigger(EventFd);

impl Trigger for IrqTrigger {
    type E = std::io::Error;
    fn trigger(&self) -> std::io::Result<()> {
        self.0.write(1)
    }
}

/// Writes guest output to stdout, flushing at each newline so it interleaves sensibly with
/// l4vmm's log on stderr.
pub struct Output(Stdout);

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut out = self.0.lock();
        let n = out.write(buf)?;
        if buf[..n].contains(&b'\n') {
            out.flush()?;
        }
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// The serial console.
pub struct Console {
    uart: Mutex<Serial<IrqTrigger, NoEvents, Output>>,
}

impl Console {
    /// Creates the UART and wires its interrupt to IRQ 4.
    pub fn new(vm: &VmFd) -> Result<Self> {
        let evt = EventFd::new(libc::EFD_NONBLOCK).map_err(Error::host("serial eventfd"))?;
        vm.register_irqfd(&evt, COM1_IRQ).map_err(Error::kvm("register_irqfd(COM1)"))?;
        Ok(Console { uart: Mutex::new(Serial::new(IrqTrigger(evt), Output(std::io::stdout()))) })
    }

    /// A guest write to register `offset`.
    pub fn write(&self, offset: u8, value: u8) {
        if let Ok(mut uart) = self.uart.lock() {
            if let Err(e) = uart.write(offset, value) {
                log::debug!("serial write: {e}");
            }
        }
    }

    /// A guest read of register `offset`.
    pub fn read(&self, offset: u8) -> u8 {
        self.uart.lock().map_or(0xff, |mut uart| uart.read(offset))
    }

    /// Host input for the guest. Bytes that do not fit the UART's FIFO are dropped.
    pub fn input(&self, bytes: &[u8]) {
        if let Ok(mut uart) = self.uart.lock() {
            if let Err(e) = uart.enqueue_raw_bytes(bytes) {
                log::debug!("serial input dropped: {e}");
            }
        }
    }

    /// Flushes guest output, unless a vCPU thread holds the UART (blocked writing to a
    /// stdout nobody reads: then nothing more can get out, and waiting would hang l4vmm).
    pub fn flush(&self) {
        if let Ok(mut uart) = self.uart.try_lock() {
            let _ = uart.writer_mut().flush();
        }
    }
}
