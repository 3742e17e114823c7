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
//! - a page marked [`SHARED`] (a memory object's mapping) is never sent copy-on-write:
//!   another mapping could write it, and the copy would not be a snapshot;
//! - a transfer checks every page, the receive window and the memory its page tables
//!   need before it changes anything (owners it took on the way are given back).

use l4_abi::args::{self, ret};
use l4_abi::syscall::{rights, Error, MsgInfo};

use crate::cap::{Cap, Kind, Object};
use crate::kernel::Kernel;
use crate::mm::memobj::{MemObj, MAX_OBJ_PAGES};
use crate::mm::vspace::{self, COW, OWNED, PRESENT, SHARED, USER, WRITABLE};
use crate::mm::PAGE_SIZE;
use crate::platform::Platform;
use crate::quota::Res;

impl Kernel {
    /// Handles a user write to `addr` that faulted: if the page is copy-on-write, makes it
    /// writable for this address space; if it is writable already (another CPU's fault
    /// got there first), lets the write be retried. Returns false if the fault is a real
    /// one.
    pub(crate) fn resolve_cow<P: Platform>(&mut self, p: &mut P, root: u64, addr: u64) -> bool {
        let page = addr & !(PAGE_SIZE - 1);
        let e = vspace::lookup(p, root, page);
        if e & PRESENT == 0 {
            return false;
        }
        if e & COW == 0 {
            // Writable already: a thread of this address space on another CPU wrote the
            // page first, and its fault copied it while this one waited for the lock
            // (this CPU's TLB still had the read-only entry). The write is retried.
            let retry = e & (USER | WRITABLE) == USER | WRITABLE;
            if retry {
                p.flush_tlb(root, page);
            }
            return retry;
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
    /// copy-on-write or granted. Returns where they landed and their length. Out of line:
    /// the message path that calls it must not pay for its registers when no page moves.
    #[inline(never)]
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
        // Every page must be the sender's own, mapped memory. Copy-on-write: a copy is a
        // snapshot only if nothing else can write the frame, so a memory object's page
        // (`SHARED`: mapped, perhaps writable, elsewhere) is refused; each frame takes
        // its receiver's owner now (undone if a later check fails).
        let cow = kind != MsgInfo::GRANT;
        for i in 0..pages {
            let e = vspace::lookup(p, src, va + i * PAGE_SIZE);
            let refused = if e & PRESENT == 0 || e & OWNED == 0 {
                Some(Error::BadAddress)
            } else if cow && e & SHARED != 0 {
                Some(Error::Shared)
            } else if cow && !self.frames.share(p, vspace::entry_addr(e)) {
                Some(Error::NoSlots)
            } else {
                None
            };
            if let Some(err) = refused {
                self.unshare(p, cow, src, va, i);
                return Err(err);
            }
        }
        // The receiver's page tables for the window, paid for before anything moves: from
        // here on nothing can fail, so a failed transfer changed nothing.
        if let Err(e) = self.room_for(vspace::tables_missing(p, dst, win, pages)) {
            self.unshare(p, cow, src, va, pages);
            return Err(e);
        }
        for i in 0..pages {
            let (s, d) = (va + i * PAGE_SIZE, win + i * PAGE_SIZE);
            // Checked above, and nothing since unmapped it (the ranges do not overlap).
            let e = vspace::lookup(p, src, s);
            let f = vspace::entry_addr(e);
            if vspace::unmap(p, &mut self.frames, dst, d) != 0 {
                p.flush_tlb(dst, d);
            }
            let flags = if kind == MsgInfo::GRANT {
                // Move: the sender loses the page, the receiver gets it as it was.
                vspace::set_leaf(p, src, s, 0);
                p.flush_tlb(src, s);
                OWNED | (e & (WRITABLE | COW | SHARED))
            } else {
                if e & WRITABLE != 0 {
                    vspace::set_leaf(p, src, s, (e & !WRITABLE) | COW);
                    p.flush_tlb(src, s);
                }
                OWNED | COW
            };
            // Cannot fail: the address is the window's, its leaf was just cleared, and
            // there is room for its tables (were it to, the frame's count stays right).
            if vspace::map(p, &mut self.frames, dst, d, f, flags).is_err() {
                self.frames.release(p, f);
            }
        }
        Ok((win, len))
    }

    /// Undoes the owners a copy-on-write transfer gave the first `n` pages at `va` in
    /// `src` (nothing for a grant).
    fn unshare<P: Platform>(&mut self, p: &mut P, cow: bool, src: u64, va: u64, n: u64) {
        if !cow {
            return;
        }
        for i in 0..n {
            let f = vspace::entry_addr(vspace::lookup(p, src, va + i * PAGE_SIZE));
            self.frames.release(p, f);
        }
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
    /// capability has RECV too. Returns its size in pages.
    pub(crate) fn memobj_map<P: Platform>(
        &mut self,
        p: &mut P,
        ti: usize,
        slot: u64,
        va: u64,
    ) -> Result<ret::MemMapObj, Error> {
        let (m, cap) = self.tasks[ti].caps.lookup(slot, Kind::Memory, rights::SEND)?;
        let m = m as usize;
        let pages = self.memobjs[m].pages;
        Self::check_user_pages(va, pages)?;
        let root = self.tasks[ti].root;
        let flags = OWNED | SHARED | if cap.rights & rights::RECV != 0 { WRITABLE } else { 0 };
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
        Ok(ret::MemMapObj { pages })
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
