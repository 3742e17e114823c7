//! The lifetime of objects as capabilities name them: a new capability adds a reference
//! to its object, a dropped one removes it, and the last one frees the object (and what
//! it holds); and the calls that copy capabilities, `CapDerive` and `CapGrant`.
//!
//! Invariants: an object's `refs` is the number of capabilities naming it (plus, for
//! endpoints, the threads whose fault endpoint it is; for memory objects, the rings
//! built on them); an object is freed exactly when it drops to 0, and its waiters are
//! told (`PartnerGone`) rather than left blocked.

use l4_abi::args::{self, ret};
use l4_abi::syscall::{rights, Error};

use crate::cap::{Cap, Kind, Object, NONE};
use crate::ipc::Notification;
use crate::kernel::Kernel;
use crate::platform::Platform;
use crate::quota::Res;
use crate::task::thread::ThreadState;

impl Kernel {
    /// Forgets one capability: an endpoint with no capability left dies, and whoever
    /// waits on it is woken with `PartnerGone`.
    pub(crate) fn drop_cap<P: Platform>(&mut self, p: &mut P, c: Cap) {
        if let Object::Ring(r) = c.object {
            self.drop_ring(p, r as usize, c.rights);
        }
        if let Object::Memory(m) = c.object {
            let m = m as usize;
            self.memobjs[m].refs = self.memobjs[m].refs.saturating_sub(1);
            if self.memobjs[m].refs == 0 {
                self.destroy_memobj(p, m);
            }
        }
        if let Object::Notification(n) = c.object {
            let n = n as usize;
            if self.notifications[n].refs == 1 {
                self.put(Res::Notifications);
            }
            self.notifications[n].refs = self.notifications[n].refs.saturating_sub(1);
            if self.notifications[n].refs == 0 {
                let w = self.notifications[n].waiter;
                if w != NONE {
                    self.threads[w as usize].regs.set_result(Err(Error::PartnerGone));
                    self.make_ready(w as usize);
                }
                self.notifications[n] = Notification::FREE;
            }
        }
        if let Object::Endpoint(e) = c.object {
            let e = e as usize;
            if self.endpoints[e].refs == 1 {
                self.put(Res::Endpoints);
            }
            self.endpoints[e].refs = self.endpoints[e].refs.saturating_sub(1);
            if self.endpoints[e].refs == 0 {
                self.fail_waiters(e);
            }
        }
    }

    /// Wakes every thread queued on endpoint `e` with `PartnerGone` (a queued fault
    /// message's thread just stays faulted).
    pub(crate) fn fail_waiters(&mut self, e: usize) {
        while let Some(t) = self.ep_pop(e) {
            self.threads[t].regs.set_result(Err(Error::PartnerGone));
            if self.threads[t].fault.is_some() {
                self.threads[t].state = ThreadState::Faulted;
            } else {
                self.make_ready(t);
            }
        }
    }

    /// Counts a new capability to an object.
    pub(crate) fn add_ref(&mut self, c: Cap) {
        match c.object {
            Object::Endpoint(e) => self.endpoints[e as usize].refs += 1,
            Object::Notification(n) => self.notifications[n as usize].refs += 1,
            Object::Memory(m) => self.memobjs[m as usize].refs += 1,
            Object::Ring(r) => {
                self.rings[r as usize].refs += 1;
                if c.rights & rights::SEND != 0 {
                    self.rings[r as usize].send_refs += 1;
                }
                if c.rights & rights::RECV != 0 {
                    self.rings[r as usize].recv_refs += 1;
                }
            }
            _ => {}
        }
    }

    pub(crate) fn cap_derive(&mut self, ti: usize, a: args::CapDerive) -> Result<ret::CapDerive, Error> {
        let slot = self.tasks[ti].caps.derive(a.slot, a.rights, a.badge)?;
        let cap = self.tasks[ti].caps.to_copy(slot as u64)?;
        self.add_ref(cap);
        Ok(ret::CapDerive { slot: slot as u64 })
    }

    pub(crate) fn cap_grant(&mut self, ti: usize, a: args::CapGrant) -> Result<ret::CapGrant, Error> {
        let (target, _) = self.tasks[ti].caps.lookup(a.task, Kind::Task, rights::GRANT)?;
        let give = self.tasks[ti].caps.to_copy(a.slot)?;
        let slot = self.tasks[target as usize].caps.insert(give)?;
        self.add_ref(give);
        Ok(ret::CapGrant { slot: slot as u64 })
    }
}
