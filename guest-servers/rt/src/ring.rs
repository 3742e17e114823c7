//! Ring channels from user space (layout in `l4_abi::ring`): the client submits entries and
//! reaps completions, the server consumes entries and produces completions, both with
//! acquire/release on free-running 32-bit indices, and `RingEnter` when one side must
//! wake or wait for the other.
//!
//! The server never trusts the client's side of the ring: `next` refuses impossible
//! indices ([`RingError::Garbage`]) and the service checks every entry's data range.

use core::sync::atomic::{AtomicU32, Ordering};

use l4_abi::ring::{self as abi, pending, Cqe, Sqe, NEED_WAKEUP};
use l4_abi::syscall::{Error, RING_SERVER};

use crate::sys;

/// Why a ring cannot be used any more.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingError {
    /// The other side wrote impossible indices.
    Garbage,
    /// A system call failed (the other side is gone, ...).
    Sys(Error),
    /// The other side stopped consuming: its ring stayed full while it was woken and
    /// given the CPU, over and over.
    Stalled,
}

/// A mapped ring.
#[derive(Clone, Copy)]
pub struct Ring {
    pub slot: u8,
    pub base: u64,
    pub entries: u32,
    pub data: u64,
    pub data_len: usize,
}

fn at(base: u64, off: usize) -> &'static AtomicU32 {
    // SAFETY: `base` is the start of the mapped ring object; the index words are 4-byte
    // aligned and live as long as the mapping (the Ring's owner keeps it mapped).
    unsafe { &*((base + off as u64) as *const AtomicU32) }
}

/// `RingEnter(ring, 0, min, flags)`; returns the pending count.
pub fn enter(slot: u8, min: u32, server: bool) -> Result<u32, Error> {
    let flags = if server { RING_SERVER } else { 0 };
    let r = sys::call_ok(l4_abi::args::RingEnter { ring: slot as u64, unused: 0, min: min as u64, flags })?;
    Ok(r.pending as u32)
}

/// Creates a ring with `entries` slots and `data_pages` of data, maps it at `va`;
/// returns it (with the client capability), the memory capability and the server
/// capability (both to hand to the server).
pub fn create(entries: u32, data_pages: u64, va: u64) -> Result<(Ring, u8, u8), Error> {
    let r = sys::call_ok(l4_abi::args::RingCreate { entries: entries as u64, data_pages })?;
    let (slot, mem, server) = (r.client as u8, r.memory as u8, r.server as u8);
    sys::mem_map_obj(mem, va)?;
    Ok((Ring::at(slot, va)?, mem, server))
}

impl Ring {
    /// A ring already mapped at `va` (the entry count is read from the object).
    pub fn at(slot: u8, va: u64) -> Result<Ring, Error> {
        let entries = at(va, abi::ENTRIES).load(Ordering::Acquire);
        if entries == 0 || !entries.is_power_of_two() || entries > abi::MAX_ENTRIES {
            return Err(Error::BadArgument);
        }
        let data = va + abi::data_offset(entries) as u64;
        Ok(Ring { slot, base: va, entries, data, data_len: 0 })
    }

    fn idx(&self, off: usize) -> &'static AtomicU32 {
        at(self.base, off)
    }

    /// Sets all four indices to `start` (before the server sees the ring; tests use it to
    /// start near the 2^32 wrap).
    pub fn reset_indices(&self, start: u32) {
        for off in [abi::SQ_HEAD, abi::SQ_TAIL, abi::CQ_HEAD, abi::CQ_TAIL] {
            self.idx(off).store(start, Ordering::Release);
        }
    }

    // ---- client ------------------------------------------------------------------

    /// Queues as many of `sqes` as fit; returns how many it took (backpressure).
    pub fn submit(&self, sqes: &[Sqe]) -> usize {
        let head = self.idx(abi::SQ_HEAD).load(Ordering::Acquire);
        let tail = self.idx(abi::SQ_TAIL).load(Ordering::Relaxed);
        let free = self.entries.saturating_sub(tail.wrapping_sub(head)) as usize;
        let n = sqes.len().min(free);
        for (i, s) in sqes[..n].iter().enumerate() {
            let off = abi::sqe_offset(self.entries, tail.wrapping_add(i as u32));
            // SAFETY: a slot of the submission ring inside the mapping; the server does not
            // read slots beyond the published tail.
            unsafe { ((self.base + off as u64) as *mut Sqe).write_volatile(*s) };
        }
        self.idx(abi::SQ_TAIL).store(tail.wrapping_add(n as u32), Ordering::Release);
        n
    }

    /// Whether a polling server asked to be woken. Call after `submit`: the full fence
    /// orders this load after the tail store, pairing with the server's fence between its
    /// flag store and its last look at the tail (no lost wake-up).
    pub fn needs_wakeup(&self) -> bool {
        core::sync::atomic::fence(Ordering::SeqCst);
        self.idx(abi::SQ_FLAGS).load(Ordering::Acquire) & NEED_WAKEUP != 0
    }

    /// Completions ready to reap.
    pub fn completions(&self) -> Result<u32, RingError> {
        let head = self.idx(abi::CQ_HEAD).load(Ordering::Relaxed);
        let tail = self.idx(abi::CQ_TAIL).load(Ordering::Acquire);
        pending(head, tail, self.entries).ok_or(RingError::Garbage)
    }

    /// Takes up to `out.len()` completions.
    pub fn reap(&self, out: &mut [Cqe]) -> Result<usize, RingError> {
        let n = (self.completions()? as usize).min(out.len());
        let head = self.idx(abi::CQ_HEAD).load(Ordering::Relaxed);
        for (i, c) in out[..n].iter_mut().enumerate() {
            let off = abi::cqe_offset(self.entries, head.wrapping_add(i as u32));
            // SAFETY: a published completion slot inside the mapping.
            *c = unsafe { ((self.base + off as u64) as *const Cqe).read_volatile() };
        }
        self.idx(abi::CQ_HEAD).store(head.wrapping_add(n as u32), Ordering::Release);
        Ok(n)
    }

    // ---- server ------------------------------------------------------------------

    /// The next submission, if any.
    pub fn next(&self) -> Result<Option<Sqe>, RingError> {
        let head = self.idx(abi::SQ_HEAD).load(Ordering::Relaxed);
        let tail = self.idx(abi::SQ_TAIL).load(Ordering::Acquire);
        match pending(head, tail, self.entries) {
            None => Err(RingError::Garbage),
            Some(0) => Ok(None),
            Some(_) => {
                let off = abi::sqe_offset(self.entries, head);
                // SAFETY: a published submission slot inside the mapping (the index is
                // masked, so garbage can only pick a wrong slot, never leave the ring).
                let s = unsafe { ((self.base + off as u64) as *const Sqe).read_volatile() };
                self.idx(abi::SQ_HEAD).store(head.wrapping_add(1), Ordering::Release);
                Ok(Some(s))
            }
        }
    }

    /// Publishes one completion; false if the completion ring is full (the client is not
    /// reaping).
    pub fn complete(&self, c: Cqe) -> Result<bool, RingError> {
        let head = self.idx(abi::CQ_HEAD).load(Ordering::Acquire);
        let tail = self.idx(abi::CQ_TAIL).load(Ordering::Relaxed);
        match pending(head, tail, self.entries) {
            None => Err(RingError::Garbage),
            Some(n) if n == self.entries => Ok(false),
            Some(_) => {
                let off = abi::cqe_offset(self.entries, tail);
                // SAFETY: a free completion slot inside the mapping.
                unsafe { ((self.base + off as u64) as *mut Cqe).write_volatile(c) };
                self.idx(abi::CQ_TAIL).store(tail.wrapping_add(1), Ordering::Release);
                Ok(true)
            }
        }
    }

    /// Sets or clears the need-wakeup flag (polling server).
    pub fn set_need_wakeup(&self, on: bool) {
        self.idx(abi::SQ_FLAGS).store(if on { NEED_WAKEUP } else { 0 }, Ordering::SeqCst);
        core::sync::atomic::fence(Ordering::SeqCst);
    }

    /// Submissions waiting.
    pub fn submissions(&self) -> Result<u32, RingError> {
        let head = self.idx(abi::SQ_HEAD).load(Ordering::Relaxed);
        let tail = self.idx(abi::SQ_TAIL).load(Ordering::Acquire);
        pending(head, tail, self.entries).ok_or(RingError::Garbage)
    }
}
