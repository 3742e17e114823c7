//! Ring channels from user space (layout in `l4_abi::ring`): the client submits entries and
//! reaps completions, the server consumes entries and produces completions, both with
//! acquire/release on free-running 32-bit indices, and `RingEnter` when one side must
//! wake or wait for the other.
//!
//! The server never trusts the client's side of the ring: `next` refuses impossible
//! indices ([`RingError::Garbage`]) and the service checks every entry's data range.

use core::cell::Cell;
use core::sync::atomic::{AtomicU16, AtomicU32, Ordering};

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

/// A full fence (stores before it are visible before loads after it), as a locked
/// read-modify-write of a stack word: what Linux's `smp_mb()` is on x86, cheaper than
/// `mfence` and as strong for ordinary memory. x86-only in what it promises: the Rust
/// memory model does not say that an RMW of one location orders others, the x86 locked
/// instruction LLVM emits for it does (and this runtime is x86-64 only).
#[inline(always)]
fn full_fence() {
    let word = AtomicU32::new(0);
    word.fetch_add(0, Ordering::SeqCst);
    core::hint::black_box(&word);
}

/// A mapped ring, used by one side (the client or the server) from one thread.
#[derive(Clone)]
pub struct Ring {
    pub slot: u8,
    pub base: u64,
    pub entries: u32,
    pub data: u64,
    pub data_len: usize,
    /// This side's copy of the other side's head (the client's of the submission head,
    /// the server's of the completion head): read from the ring only when the ring looks
    /// full by it, so that its cache line stays where it is written.
    seen_head: Cell<u32>,
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
    let ring = Ring::at(slot, va)?;
    ring.reset_indices(0);
    Ok((ring, mem, server))
}

impl Ring {
    /// A ring already mapped at `va` (the entry count is read from the object).
    pub fn at(slot: u8, va: u64) -> Result<Ring, Error> {
        let entries = at(va, abi::ENTRIES).load(Ordering::Acquire);
        if entries == 0 || !entries.is_power_of_two() || entries > abi::MAX_ENTRIES {
            return Err(Error::BadArgument);
        }
        let data = va + abi::data_offset(entries) as u64;
        let ring = Ring { slot, base: va, entries, data, data_len: 0, seen_head: Cell::new(0) };
        ring.seen_head.set(ring.idx(abi::SQ_HEAD).load(Ordering::Acquire));
        Ok(ring)
    }

    fn idx(&self, off: usize) -> &'static AtomicU32 {
        at(self.base, off)
    }

    /// The same ring, for the server's side: its copy of the other side's head is the
    /// completion head's.
    pub fn serving(self) -> Ring {
        self.seen_head.set(self.idx(abi::CQ_HEAD).load(Ordering::Acquire));
        self
    }

    /// Sets all four indices to `start` and every entry's sequence number to the one of a
    /// lap before (before the server sees the ring; tests use it to start near the 2^32
    /// wrap). Without the numbers a fresh ring's zeroes would pass for a published entry
    /// at the index whose number is 0 (the one before a wrap).
    pub fn reset_indices(&self, start: u32) {
        for off in [abi::SQ_HEAD, abi::SQ_TAIL, abi::CQ_HEAD, abi::CQ_TAIL] {
            self.idx(off).store(start, Ordering::Release);
        }
        for k in 0..self.entries {
            let at = start.wrapping_add(k);
            let lap_before = at.wrapping_add(1).wrapping_sub(self.entries);
            self.sqe_seq(at).store(lap_before as u16, Ordering::Release);
            self.cqe_seq(at).store(lap_before, Ordering::Release);
        }
        self.seen_head.set(start);
    }

    /// Room left in a ring whose producer is at `tail`, by the head this side last saw,
    /// or by the current one (`head_at`) if that leaves less than `want`.
    fn room(&self, head_at: usize, tail: u32, want: u32) -> u32 {
        let free = |head: u32| self.entries.saturating_sub(tail.wrapping_sub(head));
        if free(self.seen_head.get()) < want {
            self.seen_head.set(self.idx(head_at).load(Ordering::Acquire));
        }
        free(self.seen_head.get())
    }

    /// The sequence number of submission slot `i` (its index plus one, 16 bits).
    fn sqe_seq(&self, i: u32) -> &'static AtomicU16 {
        let off = abi::sqe_offset(self.entries, i) + abi::SQE_SEQ;
        // SAFETY: a slot of the submission ring inside the mapping; the field is 2-byte
        // aligned (slots are 64-byte aligned).
        unsafe { &*((self.base + off as u64) as *const AtomicU16) }
    }

    /// The sequence number of completion slot `i` (its index plus one).
    fn cqe_seq(&self, i: u32) -> &'static AtomicU32 {
        let off = abi::cqe_offset(self.entries, i) + abi::CQE_SEQ;
        // SAFETY: a slot of the completion ring inside the mapping; 4-byte aligned.
        unsafe { &*((self.base + off as u64) as *const AtomicU32) }
    }

    // ---- client ------------------------------------------------------------------

    /// Queues as many of `sqes` as fit; returns how many it took (backpressure). Each
    /// entry's sequence number is stored last, then the tail.
    pub fn submit(&self, sqes: &[Sqe]) -> usize {
        let tail = self.idx(abi::SQ_TAIL).load(Ordering::Relaxed);
        let n = sqes.len().min(self.room(abi::SQ_HEAD, tail, sqes.len() as u32) as usize);
        for (i, s) in sqes[..n].iter().enumerate() {
            let at = tail.wrapping_add(i as u32);
            let off = abi::sqe_offset(self.entries, at);
            // The slot still says "a lap ago" until the sequence number's release store.
            let entry = Sqe { seq: at.wrapping_add(1).wrapping_sub(self.entries) as u16, ..*s };
            // SAFETY: a slot of the submission ring inside the mapping; the server does not
            // take it before its sequence number says so.
            unsafe { ((self.base + off as u64) as *mut Sqe).write_volatile(entry) };
            self.sqe_seq(at).store(at.wrapping_add(1) as u16, Ordering::Release);
        }
        self.idx(abi::SQ_TAIL).store(tail.wrapping_add(n as u32), Ordering::Release);
        n
    }

    /// Whether a polling server asked to be woken. Call after `submit`: the full fence
    /// orders this load after the tail store, pairing with the server's fence between its
    /// flag store and its last look at the tail (no lost wake-up).
    pub fn needs_wakeup(&self) -> bool {
        full_fence();
        self.idx(abi::SQ_FLAGS).load(Ordering::Acquire) & NEED_WAKEUP != 0
    }

    /// Completions ready to reap, by the server's tail.
    pub fn completions(&self) -> Result<u32, RingError> {
        let head = self.idx(abi::CQ_HEAD).load(Ordering::Relaxed);
        let tail = self.idx(abi::CQ_TAIL).load(Ordering::Acquire);
        pending(head, tail, self.entries).ok_or(RingError::Garbage)
    }

    /// Whether the next completion is there, by its sequence number: what a polling
    /// client spins on (one cache line, which the server's answer brings).
    pub fn completion_ready(&self) -> bool {
        let head = self.idx(abi::CQ_HEAD).load(Ordering::Relaxed);
        self.cqe_seq(head).load(Ordering::Acquire) == head.wrapping_add(1)
    }

    /// Takes up to `out.len()` completions: those whose sequence numbers say they are
    /// there, in order.
    pub fn reap(&self, out: &mut [Cqe]) -> Result<usize, RingError> {
        let head = self.idx(abi::CQ_HEAD).load(Ordering::Relaxed);
        let mut n = 0;
        while n < out.len() {
            let at = head.wrapping_add(n as u32);
            if self.cqe_seq(at).load(Ordering::Acquire) != at.wrapping_add(1) {
                break;
            }
            let off = abi::cqe_offset(self.entries, at);
            // SAFETY: a published completion slot inside the mapping.
            out[n] = unsafe { ((self.base + off as u64) as *const Cqe).read_volatile() };
            n += 1;
        }
        // The tail says there is one, its slot does not (looked at again after the tail,
        // which the server stores after the slot's number): the server broke the ring.
        if n == 0 && self.completions()? > 0 && self.cqe_seq(head).load(Ordering::Acquire) != head.wrapping_add(1) {
            return Err(RingError::Garbage);
        }
        self.idx(abi::CQ_HEAD).store(head.wrapping_add(n as u32), Ordering::Release);
        Ok(n)
    }

    // ---- server ------------------------------------------------------------------

    /// The next submission, if any: waits on the slot's sequence number, not on the
    /// client's tail, which is read only when the slot is not there yet (a tail that says
    /// it is, or an impossible one, is garbage).
    pub fn next(&self) -> Result<Option<Sqe>, RingError> {
        let head = self.idx(abi::SQ_HEAD).load(Ordering::Relaxed);
        let published = |ring: &Ring| ring.sqe_seq(head).load(Ordering::Acquire) == head.wrapping_add(1) as u16;
        if !published(self) {
            let tail = self.idx(abi::SQ_TAIL).load(Ordering::Acquire);
            match pending(head, tail, self.entries) {
                None => return Err(RingError::Garbage),
                Some(0) => return Ok(None),
                // The tail is stored after the sequence number: it must be there now.
                Some(_) if !published(self) => return Err(RingError::Garbage),
                Some(_) => {}
            }
        }
        let off = abi::sqe_offset(self.entries, head);
        // SAFETY: a published submission slot inside the mapping (the index is masked,
        // so garbage can only pick a wrong slot, never leave the ring).
        let s = unsafe { ((self.base + off as u64) as *const Sqe).read_volatile() };
        self.idx(abi::SQ_HEAD).store(head.wrapping_add(1), Ordering::Release);
        Ok(Some(s))
    }

    /// The next submission if its sequence number says it is there: one cache line, the
    /// entry's own, what a polling server spins on. The client's tail is not read, so
    /// nothing here is garbage; [`Ring::next`] checks the tail.
    pub fn next_published(&self) -> Option<Sqe> {
        let head = self.idx(abi::SQ_HEAD).load(Ordering::Relaxed);
        if self.sqe_seq(head).load(Ordering::Acquire) != head.wrapping_add(1) as u16 {
            return None;
        }
        let off = abi::sqe_offset(self.entries, head);
        // SAFETY: a published submission slot inside the mapping (the index is masked).
        let s = unsafe { ((self.base + off as u64) as *const Sqe).read_volatile() };
        self.idx(abi::SQ_HEAD).store(head.wrapping_add(1), Ordering::Release);
        Some(s)
    }

    /// Publishes one completion (its sequence number last, then the tail); false if the
    /// completion ring is full (the client is not reaping).
    pub fn complete(&self, c: Cqe) -> Result<bool, RingError> {
        let tail = self.idx(abi::CQ_TAIL).load(Ordering::Relaxed);
        if self.room(abi::CQ_HEAD, tail, 1) == 0 {
            // The client can never be ahead of this side's own tail (the server stored it
            // before this call): a head that is, or is further behind than a ring holds,
            // is garbage at once, not a ring to wait on.
            return if tail.wrapping_sub(self.seen_head.get()) <= self.entries {
                Ok(false)
            } else {
                Err(RingError::Garbage)
            };
        }
        let off = abi::cqe_offset(self.entries, tail);
        let entry = Cqe { seq: tail.wrapping_add(1).wrapping_sub(self.entries), ..c };
        // SAFETY: a free completion slot inside the mapping.
        unsafe { ((self.base + off as u64) as *mut Cqe).write_volatile(entry) };
        self.cqe_seq(tail).store(tail.wrapping_add(1), Ordering::Release);
        self.idx(abi::CQ_TAIL).store(tail.wrapping_add(1), Ordering::Release);
        Ok(true)
    }

    /// Sets or clears the need-wakeup flag (polling server).
    pub fn set_need_wakeup(&self, on: bool) {
        self.idx(abi::SQ_FLAGS).store(if on { NEED_WAKEUP } else { 0 }, Ordering::SeqCst);
        full_fence();
    }

    /// Submissions waiting.
    pub fn submissions(&self) -> Result<u32, RingError> {
        let head = self.idx(abi::SQ_HEAD).load(Ordering::Relaxed);
        let tail = self.idx(abi::SQ_TAIL).load(Ordering::Acquire);
        pending(head, tail, self.entries).ok_or(RingError::Garbage)
    }
}
