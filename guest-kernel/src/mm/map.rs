//! A task's own memory: `MemMap` (zeroed frames at an address it chooses) and
//! `MemUnmap`, and the zeroed mappings the kernel makes for a new task's image and stack.
//!
//! Invariants: a task maps and unmaps only in `USER_MIN..=USER_MAP_MAX` (never the IPC
//! buffers above it, nor the kernel's half); a failed map leaves no page of it mapped
//! and no frame taken.

use l4_abi::layout::{USER_MAP_MAX, USER_MIN};
use l4_abi::syscall::Error;

use crate::kernel::{map_error, Kernel};
use crate::mm::vspace::{self, MapError, OWNED, WRITABLE};
use crate::mm::PAGE_SIZE;
use crate::platform::Platform;

impl Kernel {
    /// Maps `pages` zeroed, owned, user pages at `va` in `root`; undoes them all on failure.
    pub(crate) fn map_zeroed<P: Platform>(
        &mut self,
        p: &mut P,
        root: u64,
        va: u64,
        pages: u64,
        flags: u64,
    ) -> Result<(), Error> {
        for i in 0..pages {
            let r = match self.frames.alloc(p) {
                Some(f) => vspace::map(p, &mut self.frames, root, va + i * PAGE_SIZE, f, flags | OWNED).map_err(|e| {
                    self.frames.free_frame(p, f);
                    e
                }),
                None => Err(MapError::OutOfMemory),
            };
            if let Err(e) = r {
                for j in 0..i {
                    vspace::unmap(p, &mut self.frames, root, va + j * PAGE_SIZE);
                    p.flush_tlb(root, va + j * PAGE_SIZE);
                }
                return Err(map_error(e));
            }
        }
        Ok(())
    }

    pub(crate) fn check_user_pages(va: u64, pages: u64) -> Result<(), Error> {
        let len = pages.checked_mul(PAGE_SIZE).ok_or(Error::BadArgument)?;
        let end = va.checked_add(len).ok_or(Error::BadAddress)?;
        if va % PAGE_SIZE != 0 || va < USER_MIN || end > USER_MAP_MAX || pages == 0 || pages > 65536 {
            return Err(Error::BadAddress);
        }
        Ok(())
    }

    pub(crate) fn mem_map<P: Platform>(&mut self, p: &mut P, ti: usize, va: u64, pages: u64) -> Result<(), Error> {
        Self::check_user_pages(va, pages)?;
        self.room_for(pages)?;
        let root = self.tasks[ti].root;
        self.map_zeroed(p, root, va, pages, WRITABLE)
    }

    pub(crate) fn mem_unmap<P: Platform>(&mut self, p: &mut P, ti: usize, va: u64, pages: u64) -> Result<(), Error> {
        Self::check_user_pages(va, pages)?;
        let root = self.tasks[ti].root;
        let end = va + pages * PAGE_SIZE;
        let mut at = va;
        while at < end {
            // Skip what no page table covers (cost per existing table, not per page).
            let next = vspace::next_candidate(p, root, at);
            if next != at {
                at = next;
                continue;
            }
            if vspace::unmap(p, &mut self.frames, root, at) != 0 {
                p.flush_tlb(root, at);
            }
            at += PAGE_SIZE;
        }
        Ok(())
    }
}
