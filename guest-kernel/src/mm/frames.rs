//! The physical frame allocator, with exact accounting.
//!
//! Frames come from the usable RAM ranges (RAM in the memory map minus everything the
//! kernel, the loader and the modules occupy). Never-used frames are handed out by a bump
//! pointer and are known to be zero (the VMM gives the guest zeroed memory), so most
//! allocations touch no memory at all. Freed frames go on an intrusive free list (the link
//! lives in the first word of the free frame) and are zeroed again, by the platform, when
//! reused.
//!
//! Invariants: `free() + used() == total()` always; a frame is on the free list at most
//! once; frames outside the usable ranges are never returned or accepted.

use super::{PhysMem, PAGE_SIZE};

/// The most usable ranges tracked.
pub const MAX_RANGES: usize = 32;

/// A physical range `[start, end)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Range {
    pub start: u64,
    pub end: u64,
}

/// Computes the usable ranges: `ram` minus `reserved`, page-aligned inwards.
pub fn usable_ranges(ram: &[Range], reserved: &[Range]) -> ([Range; MAX_RANGES], usize) {
    let mut out = [Range::default(); MAX_RANGES];
    let mut n = 0;
    for r in ram {
        // Split r by every reserved range (they are few).
        let mut pieces = [Range::default(); MAX_RANGES];
        let mut np = 1;
        pieces[0] = Range { start: r.start.div_ceil(PAGE_SIZE) * PAGE_SIZE, end: r.end / PAGE_SIZE * PAGE_SIZE };
        for x in reserved {
            let mut next = [Range::default(); MAX_RANGES];
            let mut nn = 0;
            for p in &pieces[..np] {
                if x.end <= p.start || x.start >= p.end {
                    if nn < MAX_RANGES {
                        next[nn] = *p;
                        nn += 1;
                    }
                    continue;
                }
                let lo = Range { start: p.start, end: x.start / PAGE_SIZE * PAGE_SIZE };
                let hi = Range { start: x.end.div_ceil(PAGE_SIZE) * PAGE_SIZE, end: p.end };
                for piece in [lo, hi] {
                    if piece.start < piece.end && nn < MAX_RANGES {
                        next[nn] = piece;
                        nn += 1;
                    }
                }
            }
            pieces = next;
            np = nn;
        }
        for p in &pieces[..np] {
            if p.start < p.end && n < MAX_RANGES {
                out[n] = *p;
                n += 1;
            }
        }
    }
    (out, n)
}

/// The frame allocator. On a page of its own: a gdb watch on its counters is a page trap
/// on hosts without working debug registers (docs/DEBUGGING.md), and with the scheduler's
/// hot state beside them every system call would trap too.
#[repr(align(4096))]
pub struct Frames {
    ranges: [Range; MAX_RANGES],
    nranges: usize,
    /// Bump position: index of the current range and the next never-used frame in it.
    bump_range: usize,
    bump_next: u64,
    /// Head of the free list (0: empty; frame 0 is never usable).
    free_head: u64,
    total: u64,
    used: u64,
    /// Per-frame owner counts (u16 per frame number, in frames of their own), so that a
    /// frame mapped in several places (copy-on-write, shared memory) is freed with its
    /// last owner. 0 until `init_refcounts`.
    refs_pa: u64,
    refs_frames: u64,
    /// `alloc` gives no frame while `used` is this high (the quota of the account a
    /// system call is charged to, see `crate::quota`; `u64::MAX` outside calls), and
    /// says so in `refused`.
    ceiling: u64,
    refused: bool,
}

impl Frames {
    /// An allocator with no memory.
    pub const fn empty() -> Self {
        Frames {
            ranges: [Range { start: 0, end: 0 }; MAX_RANGES],
            nranges: 0,
            bump_range: 0,
            bump_next: 0,
            free_head: 0,
            total: 0,
            used: 0,
            refs_pa: 0,
            refs_frames: 0,
            ceiling: u64::MAX,
            refused: false,
        }
    }

    /// Sets up the owner counts: takes enough contiguous never-used frames for one u16 per
    /// frame number up to the highest usable frame. They are zero (VMM-zeroed memory) and
    /// stay allocated forever. Returns false if no range is large enough.
    pub fn init_refcounts(&mut self) -> bool {
        let top = self.ranges[..self.nranges].iter().map(|r| r.end).max().unwrap_or(0);
        let need = (top / PAGE_SIZE * 2).div_ceil(PAGE_SIZE);
        let Some(pa) = self.take_contiguous(need) else { return false };
        self.refs_pa = pa;
        self.refs_frames = need;
        true
    }

    /// Takes `n` contiguous never-used frames for good (the kernel's own tables): their
    /// physical address, or `None` if no range has that many left. They are zero
    /// (VMM-zeroed memory) and count as used.
    pub fn take_contiguous(&mut self, n: u64) -> Option<u64> {
        // Never-used frames of the ranges passed over: taken too, as lost (so that
        // `free() + used() == total()` still holds). Rare: the tables are taken at boot.
        let mut skipped = 0;
        for i in self.bump_range..self.nranges {
            let r = self.ranges[i];
            // (max/min, not clamp: clamp's assertion formats with SSE, see tests/kernel_image.rs.)
            let start = if i == self.bump_range { self.bump_next.max(r.start).min(r.end) } else { r.start };
            if r.end - start >= n.saturating_mul(PAGE_SIZE) {
                self.bump_range = i;
                self.bump_next = start + n * PAGE_SIZE;
                self.used += n + skipped;
                return Some(start);
            }
            skipped += (r.end - start) / PAGE_SIZE;
        }
        None
    }

    fn ref_at(&self, pa: u64) -> Option<u64> {
        let i = pa / PAGE_SIZE;
        (self.refs_pa != 0 && i * 2 < self.refs_frames * PAGE_SIZE).then_some(self.refs_pa + i * 2)
    }

    /// How many owners the frame at `pa` has (0 for frames not counted).
    pub fn owners<M: PhysMem + ?Sized>(&self, mem: &M, pa: u64) -> u16 {
        let Some(at) = self.ref_at(pa) else { return 0 };
        let mut b = [0u8; 2];
        mem.read_bytes(at, &mut b);
        u16::from_le_bytes(b)
    }

    fn set_owners<M: PhysMem + ?Sized>(&self, mem: &mut M, pa: u64, n: u16) {
        if let Some(at) = self.ref_at(pa) {
            mem.write_bytes(at, &n.to_le_bytes());
        }
    }

    /// One more owner for the frame at `pa`. False if the count would overflow.
    pub fn share<M: PhysMem + ?Sized>(&self, mem: &mut M, pa: u64) -> bool {
        let n = self.owners(mem, pa);
        if n == u16::MAX {
            return false;
        }
        self.set_owners(mem, pa, n.max(1) + 1);
        true
    }

    /// One owner fewer; the frame is freed when the last one goes. Returns whether it was.
    pub fn release<M: PhysMem + ?Sized>(&mut self, mem: &mut M, pa: u64) -> bool {
        let n = self.owners(mem, pa);
        if n > 1 {
            self.set_owners(mem, pa, n - 1);
            return false;
        }
        self.set_owners(mem, pa, 0);
        self.free_frame(mem, pa)
    }

    /// An allocator over `ranges` (page aligned, not containing frame 0).
    pub fn new(ranges: &[Range]) -> Self {
        let mut f = Frames::empty();
        f.reset(ranges);
        f
    }

    /// Makes this an allocator over `ranges`, in place (a `Frames` is a page: the kernel
    /// builds it where it lives rather than in a temporary on its 16 KiB boot stack).
    pub fn reset(&mut self, ranges: &[Range]) {
        let (mut ranges_in, mut n, mut total) = ([Range { start: 0, end: 0 }; MAX_RANGES], 0, 0);
        for r in ranges.iter().filter(|r| r.start < r.end && r.start > 0).take(MAX_RANGES) {
            ranges_in[n] = *r;
            n += 1;
            total += (r.end - r.start) / PAGE_SIZE;
        }
        self.ranges = ranges_in;
        self.nranges = n;
        self.bump_range = 0;
        self.bump_next = self.ranges[0].start;
        self.free_head = 0;
        self.total = total;
        self.used = 0;
        self.refs_pa = 0;
        self.refs_frames = 0;
        self.ceiling = u64::MAX;
        self.refused = false;
    }

    pub fn total(&self) -> u64 {
        self.total
    }
    pub fn used(&self) -> u64 {
        self.used
    }
    pub fn free(&self) -> u64 {
        self.total - self.used
    }

    /// How many frames `alloc` can still give: the free ones, up to the ceiling.
    pub fn room(&self) -> u64 {
        self.free().min(self.ceiling.saturating_sub(self.used))
    }

    /// Sets the ceiling `used` may not pass (`u64::MAX`: none).
    pub fn set_ceiling(&mut self, ceiling: u64) {
        self.ceiling = ceiling;
    }

    /// Whether the ceiling refused a frame since the last time this was asked.
    pub fn take_refused(&mut self) -> bool {
        core::mem::take(&mut self.refused)
    }

    /// Whether `pa` is a frame this allocator manages.
    pub fn owns(&self, pa: u64) -> bool {
        pa % PAGE_SIZE == 0 && self.ranges[..self.nranges].iter().any(|r| r.start <= pa && pa < r.end)
    }

    /// A zeroed frame.
    pub fn alloc<M: PhysMem + ?Sized>(&mut self, mem: &mut M) -> Option<u64> {
        if self.used >= self.ceiling {
            self.refused = true;
            return None;
        }
        if self.free_head != 0 {
            let pa = self.free_head;
            self.free_head = mem.read_u64(pa);
            mem.zero_frame(pa);
            self.used += 1;
            return Some(pa);
        }
        while self.bump_range < self.nranges {
            let r = self.ranges[self.bump_range];
            if self.bump_next >= r.start && self.bump_next < r.end {
                let pa = self.bump_next;
                self.bump_next += PAGE_SIZE;
                self.used += 1;
                return Some(pa);
            }
            self.bump_range += 1;
            if self.bump_range < self.nranges {
                self.bump_next = self.ranges[self.bump_range].start;
            }
        }
        None
    }

    /// Returns a frame. Frames this allocator does not own are ignored (and reported).
    pub fn free_frame<M: PhysMem + ?Sized>(&mut self, mem: &mut M, pa: u64) -> bool {
        if !self.owns(pa) || self.used == 0 {
            return false;
        }
        mem.write_u64(pa, self.free_head);
        self.free_head = pa;
        self.used -= 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::super::phys::fake::FakeMem;
    use super::*;

    #[test]
    fn usable_ranges_cut_out_reservations() {
        let ram = [Range { start: 0, end: 0x9fc00 }, Range { start: 0x10_0000, end: 0x100_0000 }];
        let reserved = [
            Range { start: 0, end: 0x10_0000 },
            Range { start: 0x10_0000, end: 0x12_3456 },
            Range { start: 0x20_0000, end: 0x20_0800 },
        ];
        let (r, n) = usable_ranges(&ram, &reserved);
        assert_eq!(&r[..n], &[Range { start: 0x12_4000, end: 0x20_0000 }, Range { start: 0x20_1000, end: 0x100_0000 }]);
    }

    #[test]
    fn accounting_is_exact_and_reuse_zeroes() {
        let mut mem = FakeMem::default();
        let mut f = Frames::new(&[Range { start: 0x1000, end: 0x4000 }, Range { start: 0x10000, end: 0x11000 }]);
        assert_eq!((f.total(), f.used(), f.free()), (4, 0, 4));
        let a: Vec<u64> = (0..4).map(|_| f.alloc(&mut mem).unwrap()).collect();
        assert_eq!(a, vec![0x1000, 0x2000, 0x3000, 0x10000]);
        assert_eq!(f.alloc(&mut mem), None);
        assert_eq!(mem.zeroed, 0, "never-used frames are known zero");
        mem.write_u64(0x2000 + 8, 0xdead);
        assert!(f.free_frame(&mut mem, 0x2000));
        assert!(!f.free_frame(&mut mem, 0x5000), "not ours");
        assert_eq!(f.free(), 1);
        assert_eq!(f.alloc(&mut mem), Some(0x2000));
        assert_eq!(mem.zeroed, 1);
        assert_eq!(mem.read_u64(0x2008), 0, "reused frames are zeroed");
        assert_eq!((f.used(), f.free()), (4, 0));
    }

    #[test]
    fn the_ceiling_refuses_frames_and_says_so() {
        let mut mem = FakeMem::default();
        let mut f = Frames::new(&[Range { start: 0x1000, end: 0x9000 }]);
        f.alloc(&mut mem).unwrap();
        f.set_ceiling(3);
        assert_eq!(f.room(), 2);
        let a = f.alloc(&mut mem).unwrap();
        f.alloc(&mut mem).unwrap();
        assert!(!f.take_refused());
        assert_eq!(f.alloc(&mut mem), None);
        assert!(f.take_refused());
        assert!(!f.take_refused(), "asked once");
        assert!(f.free_frame(&mut mem, a));
        assert!(f.alloc(&mut mem).is_some(), "freeing makes room under the ceiling");
        f.set_ceiling(u64::MAX);
        assert_eq!(f.room(), f.free());
    }
}
