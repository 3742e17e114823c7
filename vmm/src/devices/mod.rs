//! The guest's devices, all on the port I/O bus: the COM1 serial console, the exit device
//! and the trace-marker port.
//!
//! Invariant: nothing the guest writes or reads here can panic or block l4vmm. Accesses to
//! ports without a device read as all-ones and are otherwise ignored (counted, and logged
//! at debug level).

pub mod counter;
pub mod serial;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use l4_abi::port::{Marker, CALIBRATION_INSTRUCTIONS, COM1, EXIT, MARKER, ZERO, ZERO_MAGIC};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use self::counter::{Counter, Exactness};
use self::serial::Console;

/// What a port write asked l4vmm to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PioAction {
    Continue,
    /// Start counting ring-0 instructions on this vCPU.
    CountStart,
    /// Stop counting.
    CountStop,
    /// The guest wrote this value to the exit device.
    Exit(u8),
}

/// The port I/O bus.
pub struct Devices {
    pub console: Console,
    /// Guest RAM, for the zeroing device.
    memory: GuestMemoryMmap,
    /// When each marker was first written.
    markers: Mutex<HashMap<u8, Instant>>,
    unknown_accesses: AtomicU64,
    /// The ring-0 instruction counter's results (what a read of the marker port returns).
    counter: Counter,
}

impl Devices {
    pub fn new(console: Console, memory: GuestMemoryMmap) -> Self {
        Devices {
            console,
            memory,
            markers: Mutex::new(HashMap::new()),
            unknown_accesses: AtomicU64::new(0),
            counter: Counter::default(),
        }
    }

    /// A guest `out`.
    pub fn pio_write(&self, port: u16, data: &[u8]) -> PioAction {
        let Some(&value) = data.first() else {
            return PioAction::Continue;
        };
        match port {
            EXIT => return PioAction::Exit(value),
            ZERO if data.len() == 4 => {
                // Zero one guest frame. A frame outside guest RAM is ignored: the guest
                // cannot make l4vmm touch anything else.
                let pfn = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
                let addr = GuestAddress(u64::from(pfn) << 12);
                if self.memory.write_slice(&[0u8; 4096], addr).is_err() {
                    self.unknown(port, "zero (outside RAM)");
                }
            }
            MARKER => match Marker::from_u8(value) {
                Some(Marker::CountStart) => return PioAction::CountStart,
                Some(Marker::CountStop) => return PioAction::CountStop,
                Some(Marker::CountVerify) => match self.counter.verify() {
                    Exactness::Exact => log::info!(
                        "ring-0 instruction counter: exact on this host (calibration: {CALIBRATION_INSTRUCTIONS} of \
                         {CALIBRATION_INSTRUCTIONS} instructions)"
                    ),
                    Exactness::NotExact(Some(n)) => log::info!(
                        "ring-0 instruction counter: not exact on this host (calibration counted {n} of \
                         {CALIBRATION_INSTRUCTIONS} instructions: single-stepping misses kernel entries here); \
                         counts read as n/a"
                    ),
                    Exactness::NotExact(None) | Exactness::Unverified => log::info!(
                        "ring-0 instruction counter: unavailable (nothing could be counted, e.g. gdb owns \
                         single-stepping); counts read as n/a"
                    ),
                },
                Some(_) => {
                    if let Ok(mut m) = self.markers.lock() {
                        m.entry(value).or_insert_with(Instant::now);
                    }
                }
                None => self.unknown(port, "write (unknown marker)"),
            },
            p if (COM1..COM1 + 8).contains(&p) => self.console.write((p - COM1) as u8, value),
            _ => self.unknown(port, "write"),
        }
        PioAction::Continue
    }

    /// A guest `in`.
    pub fn pio_read(&self, port: u16, data: &mut [u8]) {
        match port {
            ZERO if data.len() == 4 => data.copy_from_slice(&ZERO_MAGIC.to_le_bytes()),
            MARKER if data.len() == 4 => data.copy_from_slice(&self.counter.read().to_le_bytes()),
            p if (COM1..COM1 + 8).contains(&p) => {
                let v = self.console.read((p - COM1) as u8);
                data.fill(0);
                if let Some(first) = data.first_mut() {
                    *first = v;
                }
            }
            _ => {
                data.fill(0xff);
                self.unknown(port, "read");
            }
        }
    }

    /// A guest MMIO access to an address with no device.
    pub fn mmio_unknown(&self, addr: u64, data: Option<&mut [u8]>) {
        let n = self.unknown_accesses.fetch_add(1, Ordering::Relaxed);
        if n < 16 {
            log::debug!("guest MMIO access to {addr:#x} with no device");
        }
        if let Some(d) = data {
            d.fill(0xff);
        }
    }

    /// Records a finished ring-0 instruction count (`None`: counting was not possible).
    pub fn set_count(&self, n: Option<u64>) {
        self.counter.record(n);
    }

    /// Guest accesses to ports or MMIO addresses without a device so far.
    pub fn unknown_accesses(&self) -> u64 {
        self.unknown_accesses.load(Ordering::Relaxed)
    }

    /// When the guest first wrote `marker`.
    pub fn marker_time(&self, marker: Marker) -> Option<Instant> {
        self.markers.lock().ok()?.get(&(marker as u8)).copied()
    }

    fn unknown(&self, port: u16, what: &str) {
        let n = self.unknown_accesses.fetch_add(1, Ordering::Relaxed);
        if n < 16 {
            log::debug!("guest port {what} at {port:#x} with no device");
        }
    }
}
