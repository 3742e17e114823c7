//! Sharing pages between address spaces: copy-on-write transfers, grants, and memory
//! objects.
//!
//! Invariants:
//! - a frame's owner count (`Frames::owners`) equals the number of page-table entries
//!   with [`OWNED`] that map it, plus one while a memory object holds it; it is freed when
//!   the count drops to zero, so accounting returns to its baseline when the last
//!   mapping goes;
//! - a page marked [`COW`] is mapped read-only everywhere; the first write by any side
//!   gets a private copy of that one page (or, for the last owner, just write access);
//! - a transfer checks every page and the receive window before it changes anything.

use l4_abi::args::{self, ret};
use l4_abi::syscall::{rights, Error, MsgInfo};

use crate::cap::{Cap, Kind, Object};
use crate::kernel::Kernel;
use crate::mm::memobj::{MemObj, MAX_OBJ_PAGES};
use crate::mm::vspace::{self, COW, OWNED, PRESENT, USER, WRITABLE};
use crate::mm::PAGE_SIZE;
use crate::platform::Platform;
use crate::quota::Res;

impl Kernel {
    /// Handles a user write to `addr` that faulted: if the page is copy-on-write, makes it
    /// writable for this address space. Returns false if the fault is a real one.
    pub(crate) fn resolve_cow<P: Platform>(&mut self, p: &mut P, root: u64, addr: u64) -> bool {
        let page = addr & !(PAGE_SIZE - 1);
        let e = vspace::lookup(p, root, page);
        if e & PRESENT == 0 || e & COW == 0 {
            return false;
        }
        let f = vspace::entry_addr(e);
        let writable = PRESENT | USER | WRITABLE | OWNED;
        if self.frames.owners(p, f) <= 1 {
            // The last owner: nobody to copy for.
            vspace::set_leaf(p, root, page, f | writable);
        } else {
            let Some(g) = self.frames.alloc(p) else { return false };
            p.copy_frame(g, f);
            vspace::set_leaf(p, root, page, g | writable);
            self.frames.release(p, f);
        }
        p.flush_tlb(root, page);
        true
    }

    /// Moves the pages a message names (words 6, 7 of `from`) into `to`'s receive window:
    /// copy-on-write or granted. Returns where they landed and their length.
    pub(crate) fn transfer_pages<P: Platform>(
        &mut self,
        p: &mut P,
        from: usize,
        to: usize,
        kind: u64,
    ) -> Result<(u64, u64), Error> {
        let (va, len) = (self.threads[from].regs.word(6), self.threads[from].regs.word(7));
        if len == 0 || va % PAGE_SIZE != 0 || len % PAGE_SIZE != 0 {
            return Err(Error::BadAddress);
        }
        let pages = len / PAGE_SIZE;
        if pages > MAX_OBJ_PAGES {
            return Err(Error::BadArgument);
        }
        Self::check_user_pages(va, pages)?;
        let (src, dst) = (self.threads[from].root, self.threads[to].root);
        let (win, win_pages) = (self.threads[to].win_va, self.threads[to].win_pages);
        if win_pages < pages {
            return Err(Error::WindowTooSmall);
        }
        // Within one address space the pages must not come from the window they go to:
        // placing page i would replace (and free) a page not yet moved.
        if src == dst && va < win + len && win < va + len {
            return Err(Error::BadArgument);
        }
        // Every page must be the sender's own, mapped memory.
        for i in 0..pages {
            let e = vspace::lookup(p, src, va + i * PAGE_SIZE);
            if e & PRESENT == 0 || e & OWNED == 0 {
                return Err(Error::BadAddress);
            }
        }
        for i in 0..pages {
            let (s, d) = (va + i * PAGE_SIZE, win + i * PAGE_SIZE);
            let e = vspace::lookup(p, src, s);
            // Checked above, and nothing since unmapped it (the ranges do not overlap).
            if e & PRESENT == 0 {
                return Err(Error::BadAddress);
            }
            let f = vspace::entry_addr(e);
            if vspace::unmap(p, &mut self.frames, dst, d) != 0 {
                p.flush_tlb(dst, d);
            }
            let flags = if kind == MsgInfo::GRANT {
                // Move: the sender loses the page, the receiver gets it as it was.
                vspace::set_leaf(p, src, s, 0);
                p.flush_tlb(src, s);
                OWNED | (e & (WRITABLE | COW))
            } else {
                if e & WRITABLE != 0 {
                    vspace::set_leaf(p, src, s, (e & !WRITABLE) | COW);
                    p.flush_tlb(src, s);
                }
                if !self.frames.share(p, f) {
                    return Err(Error::NoSlots);
                }
                OWNED | COW
            };
            if vspace::map(p, &mut self.frames, dst, d, f, flags).is_err() {
                self.frames.release(p, f);
                return Err(Error::OutOfMemory);
            }
        }
        Ok((win, len))
    }

    /// The frame address of page `i` of memory object `m`.
    pub(crate) fn memobj_page<P: Platform>(&self, p: &P, m: usize, i: u64) -> u64 {
        let l2 = p.read_u64(self.memobjs[m].list + (i / 512) * 8);
        p.read_u64(l2 + (i % 512) * 8)
    }

    /// `MemCreate(pages)`: a memory object of zeroed pages.
    pub(crate) fn memobj_create<P: Platform>(
        &mut self,
        p: &mut P,
        ti: usize,
        pages: u64,
    ) -> Result<ret::MemCreate, Error> {
        if pages == 0 || pages > MAX_OBJ_PAGES {
            return Err(Error::BadArgument);
        }
        let m = self.memobjs.iter().position(|o| o.refs == 0).ok_or(Error::NoSlots)?;
        let lists = pages.div_ceil(512);
        self.room_for(pages + lists + 1)?;
        self.take(Res::Memobjs)?;
        // Cannot fail: there is room for every frame.
        let list = self.frames.alloc(p).ok_or(Error::OutOfMemory)?;
        for l in 0..lists {
            let l2 = self.frames.alloc(p).ok_or(Error::OutOfMemory)?;
            p.write_u64(list + l * 8, l2);
            for j in 0..512.min(pages - l * 512) {
                let f = self.frames.alloc(p).ok_or(Error::OutOfMemory)?;
                p.write_u64(l2 + j * 8, f);
            }
        }
        self.memobjs[m] = MemObj { refs: 1, pages, list };
        match self.tasks[ti].caps.insert(Cap::new(Object::Memory(m as u16), rights::ALL)) {
            Ok(slot) => Ok(ret::MemCreate { slot: slot as u64 }),
            Err(e) => {
                self.destroy_memobj(p, m);
                Err(e)
            }
        }
    }

    /// `MemMapObj(slot, va)`: maps a memory object (SEND: readable); writable if the
    /// capability has RECV too.
    pub(crate) fn memobj_map<P: Platform>(&mut self, p: &mut P, ti: usize, slot: u64, va: u64) -> Result<(), Error> {
        let (m, cap) = self.tasks[ti].caps.lookup(slot, Kind::Memory, rights::SEND)?;
        let m = m as usize;
        let pages = self.memobjs[m].pages;
        Self::check_user_pages(va, pages)?;
        let root = self.tasks[ti].root;
        let flags = OWNED | if cap.rights & rights::RECV != 0 { WRITABLE } else { 0 };
        for i in 0..pages {
            let f = self.memobj_page(p, m, i);
            let r = if self.frames.share(p, f) {
                vspace::map(p, &mut self.frames, root, va + i * PAGE_SIZE, f, flags).map_err(|e| {
                    self.frames.release(p, f);
                    match e {
                        vspace::MapError::Exists => Error::Exists,
                        vspace::MapError::BadAddress => Error::BadAddress,
                        vspace::MapError::OutOfMemory => Error::OutOfMemory,
                    }
                })
            } else {
                Err(Error::NoSlots)
            };
            if let Err(e) = r {
                for j in 0..i {
                    vspace::unmap(p, &mut self.frames, root, va + j * PAGE_SIZE);
                    p.flush_tlb(root, va + j * PAGE_SIZE);
                }
                return Err(e);
            }
        }
        Ok(())
    }

    /// The last capability to memory object `m` is gone: it lets go of its frames (each
    /// is freed once no mapping owns it either).
    pub(crate) fn destroy_memobj<P: Platform>(&mut self, p: &mut P, m: usize) {
        let MemObj { pages, list, .. } = self.memobjs[m];
        if pages != 0 {
            self.put(Res::Memobjs);
        }
        if list != 0 {
            for l in 0..pages.div_ceil(512) {
                let l2 = p.read_u64(list + l * 8);
                if l2 == 0 {
                    continue;
                }
                for j in 0..512.min(pages - l * 512) {
                    let f = p.read_u64(l2 + j * 8);
                    if f != 0 {
                        self.frames.release(p, f);
                    }
                }
                self.frames.free_frame(p, l2);
            }
            self.frames.free_frame(p, list);
        }
        self.memobjs[m] = MemObj { refs: 0, pages: 0, list: 0 };
    }

    pub(crate) fn set_recv_window(&mut self, c: usize, a: args::SetRecvWindow) -> Result<(), Error> {
        if a.va != 0 || a.pages != 0 {
            Self::check_user_pages(a.va, a.pages)?;
        }
        self.threads[c].win_va = a.va;
        self.threads[c].win_pages = a.pages;
        Ok(())
    }
}
