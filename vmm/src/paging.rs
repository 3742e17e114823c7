//! Guest virtual-to-physical translation by walking the guest's page tables.
//!
//! Used to read the instruction bytes at a faulting RIP (and by the gdb stub). Handles
//! paging off and 4-level long-mode paging with 1 GiB and 2 MiB pages; anything else, or
//! a non-present entry, or a table outside guest RAM, is `None`: never a crash.

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

const PRESENT: u64 = 1;
const HUGE: u64 = 1 << 7;
const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

/// The registers that decide how the guest translates addresses.
#[derive(Debug, Clone, Copy)]
pub struct PagingMode {
    pub cr0: u64,
    pub cr3: u64,
    pub efer: u64,
}

impl PagingMode {
    /// Translates `gva`, or `None` if it is not mapped.
    pub fn translate(&self, memory: &GuestMemoryMmap, gva: u64) -> Option<u64> {
        const CR0_PG: u64 = 1 << 31;
        const EFER_LMA: u64 = 1 << 10;
        if self.cr0 & CR0_PG == 0 {
            return Some(gva);
        }
        if self.efer & EFER_LMA == 0 {
            return None; // 32-bit paging: the l4 kernel never uses it
        }
        let mut table = self.cr3 & ADDR_MASK;
        for level in (0..4).rev() {
            let index = (gva >> (12 + 9 * level)) & 0x1ff;
            let entry: u64 = memory.read_obj(GuestAddress(table + index * 8)).ok()?;
            if entry & PRESENT == 0 {
                return None;
            }
            if level > 0 && level < 3 && entry & HUGE != 0 {
                let size = 1u64 << (12 + 9 * level);
                return Some((entry & ADDR_MASK & !(size - 1)) | (gva & (size - 1)));
            }
            table = entry & ADDR_MASK;
        }
        Some(table | (gva & 0xfff))
    }

    /// Reads up to `buf.len()` bytes at `gva`, page by page; returns how many were read.
    pub fn read_virt(&self, memory: &GuestMemoryMmap, gva: u64, buf: &mut [u8]) -> usize {
        let mut done = 0;
        while done < buf.len() {
            let va = gva.wrapping_add(done as u64);
            let Some(pa) = self.translate(memory, va) else {
                break;
            };
            let chunk = ((4096 - (va & 0xfff)) as usize).min(buf.len() - done);
            if memory.read_slice(&mut buf[done..done + chunk], GuestAddress(pa)).is_err() {
                break;
            }
            done += chunk;
        }
        done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_four_levels_and_huge_pages() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 1 << 22)]).unwrap();
        // PML4 at 0x1000 -> PDPT 0x2000 -> PD 0x3000 -> PT 0x4000 -> frame 0x5000.
        mem.write_obj(0x2000u64 | 3, GuestAddress(0x1000)).unwrap();
        mem.write_obj(0x3000u64 | 3, GuestAddress(0x2000)).unwrap();
        mem.write_obj(0x4000u64 | 3, GuestAddress(0x3000)).unwrap();
        mem.write_obj(0x5000u64 | 3, GuestAddress(0x4000 + 8)).unwrap();
        // A 2 MiB page at PD index 1 -> physical 0x20_0000.
        mem.write_obj(0x20_0000u64 | 0x83, GuestAddress(0x3008)).unwrap();
        let m = PagingMode { cr0: 1 << 31, cr3: 0x1000, efer: 1 << 10 };
        assert_eq!(m.translate(&mem, 0x1234), Some(0x5234));
        assert_eq!(m.translate(&mem, 0x0234), None);
        assert_eq!(m.translate(&mem, 0x20_1234), Some(0x20_1234));
        assert_eq!(m.translate(&mem, 1 << 39), None);
        let off = PagingMode { cr0: 1, ..m };
        assert_eq!(off.translate(&mem, 0x1234), Some(0x1234));
        // A table pointer outside guest RAM is a miss, not a crash.
        mem.write_obj(0xfff_0000u64 | 3, GuestAddress(0x1000 + 8)).unwrap();
        assert_eq!(m.translate(&mem, 1 << 39), None);
    }
}
