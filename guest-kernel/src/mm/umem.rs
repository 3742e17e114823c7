//! The one way the kernel touches user memory: typed, checked copies through the task's
//! own page tables (after Hubris's `umem`).
//!
//! Invariants: every byte is checked to be in the user half, mapped, user-accessible and,
//! for writes, writable, before it is touched; a range that wraps or ends in the kernel
//! half is refused as a whole; nothing is copied if any page fails the check.

use super::vspace::{self, USER, USER_TOP, WRITABLE};
use super::{PhysMem, PAGE_SIZE};

/// A user range that failed the checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadUserRange;

/// A validated-on-use range of user memory in one address space.
#[derive(Clone, Copy, Debug)]
pub struct USlice {
    pub root: u64,
    pub va: u64,
    pub len: u64,
}

impl USlice {
    /// The range `[va, va + len)` in the address space `root`, if it lies in the user half.
    pub fn new(root: u64, va: u64, len: u64) -> Result<Self, BadUserRange> {
        let end = va.checked_add(len).ok_or(BadUserRange)?;
        if end > USER_TOP {
            return Err(BadUserRange);
        }
        Ok(USlice { root, va, len })
    }

    fn check<M: PhysMem + ?Sized>(&self, mem: &M, write: bool) -> Result<(), BadUserRange> {
        let need = USER | if write { WRITABLE } else { 0 };
        let mut page = self.va & !(PAGE_SIZE - 1);
        while page < self.va + self.len {
            let (_, flags) = vspace::translate(mem, self.root, page).ok_or(BadUserRange)?;
            if flags & need != need {
                return Err(BadUserRange);
            }
            page += PAGE_SIZE;
        }
        Ok(())
    }

    /// Copies the range into `buf` (which must be `len` long).
    pub fn read<M: PhysMem + ?Sized>(&self, mem: &M, buf: &mut [u8]) -> Result<(), BadUserRange> {
        if buf.len() as u64 != self.len {
            return Err(BadUserRange);
        }
        self.check(mem, false)?;
        let mut done = 0usize;
        while done < buf.len() {
            let va = self.va + done as u64;
            let (pa, _) = vspace::translate(mem, self.root, va).ok_or(BadUserRange)?;
            let n = ((PAGE_SIZE - (va % PAGE_SIZE)) as usize).min(buf.len() - done);
            mem.read_bytes(pa, &mut buf[done..done + n]);
            done += n;
        }
        Ok(())
    }

    /// Copies `bytes` (which must be `len` long) into the range.
    pub fn write<M: PhysMem + ?Sized>(&self, mem: &mut M, bytes: &[u8]) -> Result<(), BadUserRange> {
        if bytes.len() as u64 != self.len {
            return Err(BadUserRange);
        }
        self.check(mem, true)?;
        let mut done = 0usize;
        while done < bytes.len() {
            let va = self.va + done as u64;
            let (pa, _) = vspace::translate(mem, self.root, va).ok_or(BadUserRange)?;
            let n = ((PAGE_SIZE - (va % PAGE_SIZE)) as usize).min(bytes.len() - done);
            mem.write_bytes(pa, &bytes[done..done + n]);
            done += n;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::frames::{Frames, Range};
    use super::super::phys::fake::FakeMem;
    use super::super::vspace::{map, OWNED};
    use super::*;

    #[test]
    fn copies_cross_pages_and_refuse_bad_ranges() {
        let mut mem = FakeMem::default();
        let mut frames = Frames::new(&[Range { start: 0x100000, end: 0x200000 }]);
        let root = frames.alloc(&mut mem).unwrap();
        let a = frames.alloc(&mut mem).unwrap();
        let b = frames.alloc(&mut mem).unwrap();
        map(&mut mem, &mut frames, root, 0x1000, a, WRITABLE | OWNED).unwrap();
        map(&mut mem, &mut frames, root, 0x2000, b, OWNED).unwrap(); // read-only
        let s = USlice::new(root, 0x1ffe, 4).unwrap();
        mem.write_bytes(a + 0xffe, b"he");
        mem.write_bytes(b, b"yo");
        let mut buf = [0u8; 4];
        s.read(&mem, &mut buf).unwrap();
        assert_eq!(&buf, b"heyo");
        assert_eq!(s.write(&mut mem, b"abcd"), Err(BadUserRange), "second page is read-only");
        assert_eq!(&buf, b"heyo");
        USlice::new(root, 0x1000, 8).unwrap().write(&mut mem, b"12345678").unwrap();
        assert_eq!(USlice::new(root, 0x3000, 1).unwrap().read(&mem, &mut [0]), Err(BadUserRange), "unmapped");
        assert!(USlice::new(root, USER_TOP - 1, 2).is_err(), "into the kernel half");
        assert!(USlice::new(root, u64::MAX, 2).is_err(), "wraps");
    }
}
