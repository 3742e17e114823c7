//! `RingCreate` and `RingEnter`, the calls on ring channels ([`super::Ring`]), and what
//! happens to a ring when its capabilities go.
use l4_abi::args::ret;
use l4_abi::ring::{self as abi, pending};
use l4_abi::syscall::{rights, Error, RING_SERVER};

use super::Ring;
use crate::cap::NONE;
use crate::cap::{Cap, Kind, Object};
use crate::kernel::Kernel;
use crate::mm::memobj::MAX_OBJ_PAGES;
use crate::platform::Platform;
use crate::quota::Res;
use crate::task::sched::Next;
use crate::task::thread::ThreadState;

fn read32<P: Platform>(p: &P, pa: u64) -> u32 {
    let mut b = [0u8; 4];
    p.read_bytes(pa, &mut b);
    u32::from_le_bytes(b)
}

impl Kernel {
    /// (pending submissions, pending completions), `None` for garbage indices.
    fn ring_pending<P: Platform>(&self, p: &P, r: usize) -> (Option<u32>, Option<u32>) {
        let ring = self.rings[r];
        let f = self.memobj_page(p, ring.mem as usize, 0);
        let (sh, st) = (read32(p, f + abi::SQ_HEAD as u64), read32(p, f + abi::SQ_TAIL as u64));
        let (ch, ct) = (read32(p, f + abi::CQ_HEAD as u64), read32(p, f + abi::CQ_TAIL as u64));
        (pending(sh, st, ring.entries), pending(ch, ct, ring.entries))
    }

    fn wake_ring_waiter(&mut self, t: u16, r: Result<u32, Error>) {
        let t = t as usize;
        match r {
            Ok(n) => self.threads[t].regs.set_values(ret::RingEnter { pending: n as u64 }),
            Err(e) => self.threads[t].regs.set_result(Err(e)),
        }
        self.make_ready(t);
    }

    /// `RingCreate(entries, data_pages)`.
    pub(crate) fn ring_create<P: Platform>(
        &mut self,
        p: &mut P,
        ti: usize,
        entries: u64,
        data_pages: u64,
    ) -> Result<ret::RingCreate, Error> {
        let entries = u32::try_from(entries).map_err(|_| Error::BadArgument)?;
        if entries == 0 || !entries.is_power_of_two() || entries > abi::MAX_ENTRIES || data_pages > MAX_OBJ_PAGES / 2 {
            return Err(Error::BadArgument);
        }
        let r = self.rings.iter().position(|r| r.refs == 0).ok_or(Error::NoSlots)?;
        let pages = (abi::data_offset(entries) / 4096) as u64 + data_pages;
        self.take(Res::Rings)?;
        let mem_slot = self.memobj_create(p, ti, pages).inspect_err(|_| self.put(Res::Rings))?.slot;
        let Ok((m, _)) = self.tasks[ti].caps.lookup(mem_slot, Kind::Memory, rights::ALL) else {
            self.put(Res::Rings);
            return Err(Error::NoSlots);
        };
        let f = self.memobj_page(p, m as usize, 0);
        p.write_bytes(f + abi::ENTRIES as u64, &entries.to_le_bytes());
        let client = self.tasks[ti].caps.insert(Cap::new(Object::Ring(r as u16), rights::SEND | rights::GRANT));
        let server = client.and_then(|cs| {
            self.tasks[ti].caps.insert(Cap::new(Object::Ring(r as u16), rights::RECV | rights::GRANT)).inspect_err(
                |_| {
                    let _ = self.tasks[ti].caps.take(cs as u64);
                },
            )
        });
        match (client, server) {
            (Ok(cs), Ok(ss)) => {
                self.rings[r] = Ring { refs: 2, send_refs: 1, recv_refs: 1, mem: m, entries, ..Ring::FREE };
                self.memobjs[m as usize].refs += 1;
                Ok(ret::RingCreate { client: cs as u64, memory: mem_slot, server: ss as u64 })
            }
            (Err(e), _) | (_, Err(e)) => {
                self.put(Res::Rings);
                if let Ok(cap) = self.tasks[ti].caps.take(mem_slot) {
                    self.drop_cap(p, cap);
                }
                Err(e)
            }
        }
    }

    /// `RingEnter(ring, _, min, flags)`.
    pub(crate) fn ring_enter<P: Platform>(
        &mut self,
        p: &mut P,
        c: usize,
        ti: usize,
        slot: u64,
        min: u64,
        flags: u64,
    ) -> Next {
        let server = flags & RING_SERVER != 0;
        let need = if server { rights::RECV } else { rights::SEND };
        let (r, _) = match self.tasks[ti].caps.lookup(slot, Kind::Ring, need) {
            Ok(found) => found,
            Err(e) => return Next::Return(Err(e)),
        };
        let r = r as usize;
        let min = u32::try_from(min).unwrap_or(u32::MAX).min(self.rings[r].entries);
        if (server && self.rings[r].send_refs == 0) || (!server && self.rings[r].recv_refs == 0) {
            return Next::Return(Err(Error::PartnerGone));
        }
        let (sq, cq) = self.ring_pending(p, r);
        // First wake the other side if what it waits for is there (or the ring is broken:
        // it must look for itself).
        let (other, want, have) = if server {
            (self.rings[r].client, self.rings[r].client_min, cq)
        } else {
            (self.rings[r].server, self.rings[r].server_min, sq)
        };
        if other != NONE && other as usize != c {
            match have {
                Some(n) if n >= want => {
                    self.rings[r].forget(other);
                    self.wake_ring_waiter(other, Ok(n));
                }
                None => {
                    self.rings[r].forget(other);
                    self.wake_ring_waiter(other, Err(Error::BadArgument));
                }
                _ => {}
            }
        }
        // Then this side's own wait.
        let mine = if server { sq } else { cq };
        let Some(n) = mine else { return Next::Return(Err(Error::BadArgument)) };
        if n >= min {
            return self.give(c, Ok(ret::RingEnter { pending: n as u64 }));
        }
        let waiter = if server { self.rings[r].server } else { self.rings[r].client };
        if waiter != NONE && waiter as usize != c {
            return Next::Return(Err(Error::Exists));
        }
        if server {
            self.rings[r].server = c as u16;
            self.rings[r].server_min = min;
        } else {
            self.rings[r].client = c as u16;
            self.rings[r].client_min = min;
        }
        Next::Block(ThreadState::BlockedRing { r: r as u16 })
    }

    /// One capability to ring `r` fewer; the last one wakes the waiters and lets go of
    /// the memory object.
    pub(crate) fn drop_ring<P: Platform>(&mut self, p: &mut P, r: usize, cap_rights: u64) {
        self.rings[r].refs = self.rings[r].refs.saturating_sub(1);
        if cap_rights & rights::SEND != 0 {
            self.rings[r].send_refs = self.rings[r].send_refs.saturating_sub(1);
            let server = self.rings[r].server;
            if self.rings[r].send_refs == 0 && server != NONE {
                self.rings[r].forget(server);
                self.wake_ring_waiter(server, Err(Error::PartnerGone));
            }
        }
        if cap_rights & rights::RECV != 0 {
            self.rings[r].recv_refs = self.rings[r].recv_refs.saturating_sub(1);
            let client = self.rings[r].client;
            if self.rings[r].recv_refs == 0 && client != NONE {
                self.rings[r].forget(client);
                self.wake_ring_waiter(client, Err(Error::PartnerGone));
            }
        }
        if self.rings[r].refs != 0 {
            return;
        }
        let Ring { client, server, mem, .. } = self.rings[r];
        for t in [client, server] {
            if t != NONE {
                self.wake_ring_waiter(t, Err(Error::PartnerGone));
            }
        }
        self.rings[r] = Ring::FREE;
        self.put(Res::Rings);
        self.drop_cap(p, Cap::new(Object::Memory(mem), 0));
    }
}
