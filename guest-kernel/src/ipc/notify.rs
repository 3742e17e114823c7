//! Notifications: a word of signal bits per object, which `Signal` ORs bits (and the
//! capability's badge) into and `Wait` takes, waking at most one waiter.
//!
//! Invariants: a notification has at most one waiter, and a waiter exists only while
//! the bits are 0.

use l4_abi::args::ret;
use l4_abi::syscall::{rights, Error};

use super::Notification;
use crate::cap::NONE;
use crate::cap::{Cap, Kind, Object};
use crate::kernel::Kernel;
use crate::quota::Res;
use crate::task::sched::Next;
use crate::task::thread::ThreadState;

impl Kernel {
    pub(crate) fn notify_create(&mut self, ti: usize) -> Result<ret::NotifyCreate, Error> {
        let n = self.notifications.iter().position(|n| n.refs == 0).ok_or(Error::NoSlots)?;
        self.take(Res::Notifications)?;
        let slot =
            self.tasks[ti].caps.insert(Cap::new(Object::Notification(n as u16), rights::ALL)).inspect_err(|_| {
                self.put(Res::Notifications);
            })?;
        self.notifications[n] = Notification { refs: 1, ..Notification::FREE };
        Ok(ret::NotifyCreate { slot: slot as u64 })
    }

    fn notification(&self, ti: usize, slot: u64, need: u64) -> Result<(usize, Cap), Error> {
        let (n, cap) = self.tasks[ti].caps.lookup(slot, Kind::Notification, need)?;
        Ok((n as usize, cap))
    }

    /// Sets `bits` (the capability's badge too, if it has one); wakes the waiter.
    pub(crate) fn signal(&mut self, ti: usize, slot: u64, bits: u64) -> Result<(), Error> {
        let (n, Cap { badge, .. }) = self.notification(ti, slot, rights::SEND)?;
        let nt = &mut self.notifications[n];
        nt.bits |= bits | badge;
        if nt.waiter != NONE && nt.bits != 0 {
            let w = nt.waiter as usize;
            nt.waiter = NONE;
            let bits = core::mem::take(&mut nt.bits);
            self.threads[w].regs.set_values(ret::Wait { bits });
            self.make_ready(w);
        }
        Ok(())
    }

    /// Takes the bits, or blocks until there are some. One waiter per notification.
    pub(crate) fn wait(&mut self, c: usize, ti: usize, slot: u64) -> Next {
        let n = match self.notification(ti, slot, rights::RECV) {
            Ok((n, _)) => n,
            Err(e) => return Next::Return(Err(e)),
        };
        let nt = &mut self.notifications[n];
        if nt.bits != 0 {
            let bits = core::mem::take(&mut nt.bits);
            return self.give(c, Ok(ret::Wait { bits }));
        }
        if nt.waiter != NONE {
            return Next::Return(Err(Error::Exists));
        }
        nt.waiter = c as u16;
        Next::Block(ThreadState::BlockedWait { n: n as u16 })
    }
}
