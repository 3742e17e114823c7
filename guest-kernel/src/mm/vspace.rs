//! x86_64 4-level page tables, edited through [`PhysMem`].
//!
//! An address space is a PML4 frame whose upper half (entries 256-511) is copied from the
//! kernel's own PML4, so the kernel is mapped everywhere; only the lower half belongs to
//! the task. Invariants: user mappings are only ever made below [`USER_TOP`]; intermediate
//! tables are allocated zeroed and freed with the address space; a leaf with [`OWNED`] set
//! is freed when unmapped, a leaf without it (the shared entry page, boot files) is not.

use super::frames::Frames;
use super::{PhysMem, PAGE_SIZE};

pub const PRESENT: u64 = 1 << 0;
pub const WRITABLE: u64 = 1 << 1;
pub const USER: u64 = 1 << 2;
pub const HUGE: u64 = 1 << 7;
/// Software bit: this address space owns the frame (free it on unmap).
pub const OWNED: u64 = 1 << 9;
/// Software bit: copy-on-write (issue [ipc]).
pub const COW: u64 = 1 << 10;
/// Software bit: a memory object's page, which other mappings (in this address space or
/// others) may write: never sent copy-on-write, which would not be a snapshot.
pub const SHARED: u64 = 1 << 11;
const ADDR: u64 = 0x000f_ffff_ffff_f000;

/// One past the highest user address (the canonical lower half).
pub const USER_TOP: u64 = 0x0000_8000_0000_0000;

/// Why a mapping failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// Not a page-aligned user address.
    BadAddress,
    /// Something is mapped there already.
    Exists,
    /// No frame for a page table.
    OutOfMemory,
}

fn index(va: u64, level: u32) -> u64 {
    (va >> (12 + 9 * level)) & 0x1ff
}

/// A new address space: a zeroed PML4 with the kernel half of `kernel_root` copied in.
pub fn new_root<M: PhysMem + ?Sized>(mem: &mut M, frames: &mut Frames, kernel_root: u64) -> Option<u64> {
    let root = frames.alloc(mem)?;
    for i in 256..512 {
        let e = mem.read_u64(kernel_root + i * 8);
        mem.write_u64(root + i * 8, e);
    }
    Some(root)
}

/// Maps the 4 KiB page at `va` to `pa` with `flags` (plus PRESENT | USER).
pub fn map<M: PhysMem + ?Sized>(
    mem: &mut M,
    frames: &mut Frames,
    root: u64,
    va: u64,
    pa: u64,
    flags: u64,
) -> Result<(), MapError> {
    if va % PAGE_SIZE != 0 || va >= USER_TOP || pa % PAGE_SIZE != 0 {
        return Err(MapError::BadAddress);
    }
    let mut table = root;
    for level in (1..4).rev() {
        let slot = table + index(va, level) * 8;
        let e = mem.read_u64(slot);
        table = if e & PRESENT != 0 {
            if e & HUGE != 0 {
                return Err(MapError::Exists);
            }
            e & ADDR
        } else {
            let t = frames.alloc(mem).ok_or(MapError::OutOfMemory)?;
            mem.write_u64(slot, t | PRESENT | WRITABLE | USER);
            t
        };
    }
    let slot = table + index(va, 0) * 8;
    if mem.read_u64(slot) & PRESENT != 0 {
        return Err(MapError::Exists);
    }
    mem.write_u64(slot, pa | flags | PRESENT | USER);
    Ok(())
}

/// How many page tables `map` would have to allocate to map every page of
/// `[va, va + pages * PAGE_SIZE)` in `root`: one walk per 2 MiB the range touches (a
/// table missing at one level means every table below it in its range is missing too;
/// an upper table is counted once for all the 2 MiB regions under it).
pub fn tables_missing<M: PhysMem + ?Sized>(mem: &M, root: u64, va: u64, pages: u64) -> u64 {
    const PT_SPAN: u64 = 1 << 21;
    let end = va.saturating_add(pages.saturating_mul(PAGE_SIZE));
    let (mut n, mut counted_pd, mut counted_pdpt) = (0, u64::MAX, u64::MAX);
    let mut r = va & !(PT_SPAN - 1);
    while r < end {
        // How many of the PDPT, PD and PT over `r` exist (they exist top down).
        let mut table = root;
        let mut present = 0;
        for level in (1..4).rev() {
            let e = mem.read_u64(table + index(r, level) * 8);
            if e & PRESENT == 0 || e & HUGE != 0 {
                break;
            }
            table = e & ADDR;
            present += 1;
        }
        if present < 3 {
            n += 1; // the page table
        }
        if present < 2 && r >> 30 != counted_pd {
            n += 1; // the page directory, once per 1 GiB
            counted_pd = r >> 30;
        }
        if present < 1 && r >> 39 != counted_pdpt {
            n += 1; // the page-directory-pointer table, once per 512 GiB
            counted_pdpt = r >> 39;
        }
        r = r.saturating_add(PT_SPAN);
    }
    n
}

/// Walks the tables of user address `va`: the leaf entry's slot, or `Err(span)` with the
/// size of the range (2 MiB, 1 GiB or 512 GiB) the first missing table would cover.
fn walk<M: PhysMem + ?Sized>(mem: &M, root: u64, va: u64) -> Result<u64, u64> {
    let mut table = root;
    for level in (1..4).rev() {
        let e = mem.read_u64(table + index(va, level) * 8);
        if e & PRESENT == 0 || e & HUGE != 0 {
            return Err(1u64 << (12 + 9 * level));
        }
        table = e & ADDR;
    }
    Ok(table + index(va, 0) * 8)
}

/// The leaf entry slot for `va`, if all tables above it exist.
fn leaf_slot<M: PhysMem + ?Sized>(mem: &M, root: u64, va: u64) -> Option<u64> {
    if va >= USER_TOP {
        return None;
    }
    walk(mem, root, va).ok()
}

/// The first page at or after `va` that can hold a mapping in `root`: where a page table
/// along the way is missing, the whole range it would cover is skipped. Range operations
/// use it to cost per page table that exists, not per page asked for (a task asking to
/// unmap 256 MiB of nothing must not hold the kernel for seconds).
pub fn next_candidate<M: PhysMem + ?Sized>(mem: &M, root: u64, va: u64) -> u64 {
    if va >= USER_TOP {
        return va;
    }
    match walk(mem, root, va) {
        Ok(_) => va,
        Err(span) => (va & !(span - 1)).saturating_add(span),
    }
}

/// The leaf entry for the user page containing `va` (0 if none).
pub fn lookup<M: PhysMem + ?Sized>(mem: &M, root: u64, va: u64) -> u64 {
    leaf_slot(mem, root, va & !(PAGE_SIZE - 1)).map_or(0, |s| mem.read_u64(s))
}

/// Translates a user address: `(physical address, leaf flags)`.
pub fn translate<M: PhysMem + ?Sized>(mem: &M, root: u64, va: u64) -> Option<(u64, u64)> {
    let e = lookup(mem, root, va);
    if e & PRESENT == 0 {
        return None;
    }
    Some(((e & ADDR) | (va & (PAGE_SIZE - 1)), e & !ADDR))
}

/// Unmaps the page at `va`; an [`OWNED`] frame loses this owner (and is freed with its
/// last). Returns the old entry (0 if nothing was mapped). The caller flushes the TLB.
pub fn unmap<M: PhysMem + ?Sized>(mem: &mut M, frames: &mut Frames, root: u64, va: u64) -> u64 {
    let Some(slot) = leaf_slot(mem, root, va & !(PAGE_SIZE - 1)) else { return 0 };
    let e = mem.read_u64(slot);
    if e & PRESENT == 0 {
        return 0;
    }
    mem.write_u64(slot, 0);
    if e & OWNED != 0 {
        frames.release(mem, e & ADDR);
    }
    e
}

/// Replaces the leaf entry for a mapped page (same or new frame, new flags); returns the
/// old one. The caller handles owner counts of the frames and flushes the TLB.
pub fn set_leaf<M: PhysMem + ?Sized>(mem: &mut M, root: u64, va: u64, entry: u64) -> Option<u64> {
    let slot = leaf_slot(mem, root, va & !(PAGE_SIZE - 1))?;
    let old = mem.read_u64(slot);
    if old & PRESENT == 0 {
        return None;
    }
    mem.write_u64(slot, entry);
    Some(old)
}

/// The physical address in a leaf entry.
pub fn entry_addr(e: u64) -> u64 {
    e & ADDR
}

/// Frees the whole user half of an address space: owned leaf frames, every page table,
/// and the PML4 itself.
pub fn destroy<M: PhysMem + ?Sized>(mem: &mut M, frames: &mut Frames, root: u64) {
    fn walk<M: PhysMem + ?Sized>(mem: &mut M, frames: &mut Frames, table: u64, level: u32, entries: u64) {
        for i in 0..entries {
            let e = mem.read_u64(table + i * 8);
            if e & PRESENT == 0 {
                continue;
            }
            if level == 0 {
                if e & OWNED != 0 {
                    frames.release(mem, e & ADDR);
                }
            } else {
                walk(mem, frames, e & ADDR, level - 1, 512);
                frames.free_frame(mem, e & ADDR);
            }
        }
    }
    walk(mem, frames, root, 3, 256);
    frames.free_frame(mem, root);
}

#[cfg(test)]
mod tests {
    use super::super::frames::Range;
    use super::super::phys::fake::FakeMem;
    use super::*;

    #[test]
    fn map_translate_unmap_destroy_keeps_accounting() {
        let mut mem = FakeMem::default();
        let mut frames = Frames::new(&[Range { start: 0x100000, end: 0x200000 }]);
        let kroot = frames.alloc(&mut mem).unwrap();
        mem.write_u64(kroot + 511 * 8, 0xabc000 | PRESENT);
        let base = frames.used();
        let root = new_root(&mut mem, &mut frames, kroot).unwrap();
        assert_eq!(mem.read_u64(root + 511 * 8), 0xabc000 | PRESENT, "kernel half shared");
        let f = frames.alloc(&mut mem).unwrap();
        map(&mut mem, &mut frames, root, 0x40_0000, f, WRITABLE | OWNED).unwrap();
        assert_eq!(map(&mut mem, &mut frames, root, 0x40_0000, f, 0), Err(MapError::Exists));
        assert_eq!(map(&mut mem, &mut frames, root, USER_TOP, f, 0), Err(MapError::BadAddress));
        assert_eq!(map(&mut mem, &mut frames, root, 0x40_0001, f, 0), Err(MapError::BadAddress));
        let (pa, flags) = translate(&mem, root, 0x40_0123).unwrap();
        assert_eq!(pa, f + 0x123);
        assert!(flags & USER != 0 && flags & WRITABLE != 0);
        assert_eq!(translate(&mem, root, 0x40_1000), None);
        // A shared (not owned) page is not freed with the address space.
        let shared = frames.alloc(&mut mem).unwrap();
        map(&mut mem, &mut frames, root, 0x7fff_ffff_f000, shared, 0).unwrap();
        let used = frames.used();
        assert_ne!(unmap(&mut mem, &mut frames, root, 0x40_0000), 0);
        assert_eq!(frames.used(), used - 1, "owned frame freed on unmap");
        destroy(&mut mem, &mut frames, root);
        assert_eq!(frames.used(), base + 1, "only the shared frame is still in use");
    }

    #[test]
    fn tables_missing_counts_exactly_the_tables_map_allocates() {
        let mut mem = FakeMem::default();
        let mut frames = Frames::new(&[Range { start: 0x100000, end: 0x800000 }]);
        let kroot = frames.alloc(&mut mem).unwrap();
        let root = new_root(&mut mem, &mut frames, kroot).unwrap();
        let f = frames.alloc(&mut mem).unwrap();
        map(&mut mem, &mut frames, root, 0x40_0000, f, OWNED).unwrap();
        // Within a table that exists, across a 2 MiB line, across a 1 GiB line, and far.
        for (va, pages) in
            [(0x40_1000, 3), (0x5f_f000, 2), (0x3fff_f000, 2), (0x80_0000_0000, 1), (0x1_0000_0000, 1024)]
        {
            let want = tables_missing(&mem, root, va, pages);
            let used = frames.used();
            for i in 0..pages {
                let f = frames.alloc(&mut mem).unwrap();
                map(&mut mem, &mut frames, root, va + i * PAGE_SIZE, f, OWNED).unwrap();
            }
            assert_eq!(frames.used() - used - pages, want, "{va:#x} + {pages} pages");
            assert_eq!(tables_missing(&mem, root, va, pages), 0);
        }
    }
}
