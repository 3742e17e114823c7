//! Write watchpoints by page trapping, for hosts whose KVM does not fire debug-register
//! data breakpoints in guest ring 0 (PVM, where ring 0 runs in KVM's emulator).
//!
//! The guest-physical page under each watch is moved into a read-only KVM memory slot:
//! the guest's writes to it exit to l4vmm as MMIO writes, which the vCPU thread performs on
//! guest RAM itself; a write that overlaps a watched range stops the vCPU after the
//! instruction. Invariants: a watch never crosses a page; the set changes only while every
//! vCPU is parked; writes to trapped pages are never lost, watched or not.

use std::collections::BTreeSet;
use std::sync::RwLock;

/// One write watch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrapWatch {
    /// The address gdb asked for (guest-virtual).
    pub gva: u64,
    /// Where it was mapped when the watch was set (guest-physical).
    pub gpa: u64,
    pub len: u64,
}

/// The write watches, shared by the gdb thread and the vCPU threads.
#[derive(Debug, Default)]
pub struct PageTraps {
    watches: RwLock<Vec<TrapWatch>>,
}

impl PageTraps {
    /// Adds a watch; false if it would cross a page boundary.
    pub fn add(&self, w: TrapWatch) -> bool {
        if w.len == 0 || (w.gpa & 0xfff) + w.len > 0x1000 {
            return false;
        }
        if let Ok(mut v) = self.watches.write() {
            if !v.contains(&w) {
                v.push(w);
            }
        }
        true
    }

    /// Removes the watch gdb set at `gva` with `len`.
    pub fn remove(&self, gva: u64, len: u64) -> bool {
        let Ok(mut v) = self.watches.write() else { return false };
        let before = v.len();
        v.retain(|w| !(w.gva == gva && w.len == len));
        v.len() != before
    }

    pub fn clear(&self) {
        if let Ok(mut v) = self.watches.write() {
            v.clear();
        }
    }

    /// The guest-physical pages to trap.
    pub fn pages(&self) -> BTreeSet<u64> {
        self.watches.read().map(|v| v.iter().map(|w| w.gpa & !0xfff).collect()).unwrap_or_default()
    }

    /// Whether `gpa` lies in a trapped page.
    pub fn is_trapped(&self, gpa: u64) -> bool {
        self.watches.read().is_ok_and(|v| v.iter().any(|w| w.gpa & !0xfff == gpa & !0xfff))
    }

    /// The watch a write of `len` bytes at `gpa` hits, if any.
    pub fn hit(&self, gpa: u64, len: u64) -> Option<TrapWatch> {
        let v = self.watches.read().ok()?;
        v.iter().copied().find(|w| gpa < w.gpa + w.len && w.gpa < gpa + len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_overlapping_writes_only() {
        let t = PageTraps::default();
        assert!(t.add(TrapWatch { gva: 0xffff_0010, gpa: 0x5010, len: 8 }));
        assert!(!t.add(TrapWatch { gva: 0, gpa: 0x5ffc, len: 8 }), "crosses a page");
        assert!(t.is_trapped(0x5000) && t.is_trapped(0x5fff) && !t.is_trapped(0x6000));
        assert_eq!(t.hit(0x5010, 1).map(|w| w.gva), Some(0xffff_0010));
        assert_eq!(t.hit(0x500c, 8).map(|w| w.gva), Some(0xffff_0010));
        assert_eq!(t.hit(0x5018, 8), None);
        assert_eq!(t.hit(0x5008, 8), None);
        assert_eq!(t.pages().into_iter().collect::<Vec<_>>(), vec![0x5000]);
        assert!(t.remove(0xffff_0010, 8));
        assert!(t.pages().is_empty());
    }
}
