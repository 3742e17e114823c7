//! Quotas: which task pays for each kernel object and frame, and how much it may hold.
//!
//! Every task draws on one [`Account`]: its own, made at `TaskSpawn` from a quota its
//! parent carves out of the account the parent draws on, or (spawned without one) its
//! parent's. An account has a limit per resource ([`Res`]) and what is charged to it.
//!
//! Charging is by difference, so no object has to remember who paid for it: the kernel
//! counts what is live ([`Meter`]; frames in `mm::frames`), a system call that may make
//! or free something runs with the meter open on its caller's account, and what the live
//! counts grew (or shrank) by during the call is charged to (or credited to) that account
//! when it ends. While it runs, nothing can be made past the account's limit: the
//! ceilings refuse it, with `Quota`.
//!
//! Invariants:
//! - an account's `used` plus the quotas lent out of it is what it holds; `used` may go
//!   below zero, when a call frees what another account paid for (the last capability
//!   to a memory object it was given): the one who lets go is credited;
//! - the sum over the accounts of `used` is what is live (every change is charged to
//!   exactly one account), so the accounts together never hold more than the root's
//!   limit, which is the machine;
//! - a dead task's account goes back to the account it was lent from ([`Account::settle`]):
//!   its limit is returned, what it still holds (objects that outlived it) is charged
//!   there.
//!
//! Portable, no `unsafe`, host-tested.

use l4_abi::quota::Quota;
use l4_abi::syscall::Error;

/// The number of resources a quota limits.
pub const RESOURCES: usize = Quota::RESOURCES;

/// One count per resource, in [`Res`] order.
pub type Counts = [u64; RESOURCES];

/// A resource, as an index into [`Counts`] ([`Quota`]'s order).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum Res {
    Frames = 0,
    Tasks,
    Threads,
    Endpoints,
    Notifications,
    Memobjs,
    Rings,
}

/// What an account may hold and what is charged to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Account {
    pub limit: Counts,
    /// Charged: can be negative (see the module's invariants).
    pub used: [i64; RESOURCES],
}

impl Account {
    pub const EMPTY: Account = Account { limit: [0; RESOURCES], used: [0; RESOURCES] };

    /// An account with `limit` that holds `used` already.
    pub fn new(limit: Counts, used: Counts) -> Account {
        Account { limit, used: used.map(|u| u.min(i64::MAX as u64) as i64) }
    }

    /// What can still be charged: the limit less what is used (more than the limit if
    /// `used` is below zero).
    pub fn left(&self) -> Counts {
        const ALL: [Res; RESOURCES] =
            [Res::Frames, Res::Tasks, Res::Threads, Res::Endpoints, Res::Notifications, Res::Memobjs, Res::Rings];
        ALL.map(|r| self.left_of(r))
    }

    /// What can still be charged of `r`.
    pub fn left_of(&self, r: Res) -> u64 {
        let (limit, u) = (self.limit[r as usize], self.used[r as usize]);
        if u >= 0 {
            limit.saturating_sub(u as u64)
        } else {
            limit.saturating_add(u.unsigned_abs())
        }
    }

    /// Lends `q` out of this account (a child's quota), or refuses with `Quota` if any
    /// resource has less left, changing nothing.
    pub fn lend(&mut self, q: &Counts) -> Result<(), Error> {
        let left = self.left();
        if q.iter().zip(left.iter()).any(|(want, have)| want > have) {
            return Err(Error::Quota);
        }
        self.charge(&q.map(|n| n.min(i64::MAX as u64) as i64));
        Ok(())
    }

    /// Takes back a loan of `q` that was never used (the spawn it was for failed).
    pub fn repay(&mut self, q: &Counts) {
        self.charge(&q.map(|n| -(n.min(i64::MAX as u64) as i64)));
    }

    /// Adds `d` to what is used.
    pub fn charge(&mut self, d: &[i64; RESOURCES]) {
        for (u, d) in self.used.iter_mut().zip(d.iter()) {
            *u = u.saturating_add(*d);
        }
    }

    /// `child`, lent out of this account, is gone: its limit comes back and what it
    /// still holds is charged here.
    pub fn settle(&mut self, child: &Account) {
        for i in 0..RESOURCES {
            let back = child.limit[i].min(i64::MAX as u64) as i64;
            self.used[i] = self.used[i].saturating_add(child.used[i]).saturating_sub(back);
        }
    }
}

/// The live count of each kind of object, and for the running system call the counts and
/// frames at its start and the ceilings it may not pass. Frames are counted by the frame
/// allocator (which has its own ceiling): the meter keeps only their count at the start.
///
/// Cheap when nothing is made: `open` and `flush` cost a few stores; the counts at the
/// start and the ceilings are taken only when the call first makes or frees an object
/// (`begin`), which the kernel does before every `take` and `put`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meter {
    live: Counts,
    /// Valid once begun.
    start: Counts,
    ceiling: Counts,
    begun: bool,
    frames_start: u64,
    /// Set when a ceiling refused something since `take_refused` was last asked.
    refused: bool,
}

impl Meter {
    /// No object live, nothing begun.
    pub const fn new() -> Meter {
        Meter {
            live: [0; RESOURCES],
            start: [0; RESOURCES],
            ceiling: [u64::MAX; RESOURCES],
            begun: false,
            frames_start: 0,
            refused: false,
        }
    }

    /// How many of `r` are live.
    pub fn live(&self, r: Res) -> u64 {
        self.live[r as usize]
    }

    /// Whether the counts at the start and the ceilings are taken.
    pub fn begun(&self) -> bool {
        self.begun
    }

    /// Takes the counts at the start, and the ceilings of an account with `left`.
    pub fn begin(&mut self, left: &Counts) {
        self.start = self.live;
        self.ceiling = core::array::from_fn(|i| self.start[i].saturating_add(left[i]));
        self.begun = true;
    }

    /// One more of `r` (not frames), or `Quota` if that passes the ceiling. Begun.
    pub fn take(&mut self, r: Res) -> Result<(), Error> {
        let i = r as usize;
        if self.live[i] >= self.ceiling[i] {
            self.refused = true;
            return Err(Error::Quota);
        }
        self.live[i] += 1;
        Ok(())
    }

    /// One fewer of `r` (not frames). Begun.
    pub fn put(&mut self, r: Res) {
        let i = r as usize;
        self.live[i] = self.live[i].saturating_sub(1);
    }

    /// A call starts, with `frames` live.
    pub fn open(&mut self, frames: u64) {
        self.begun = false;
        self.frames_start = frames;
    }

    /// Whether anything changed since `open` or `flush`, with `frames` live now.
    pub fn changed(&self, frames: u64) -> bool {
        self.begun || frames != self.frames_start
    }

    /// What changed since `open` (or the last `flush`), with `frames` live now, to be
    /// charged; counting starts again from here.
    pub fn flush(&mut self, frames: u64) -> [i64; RESOURCES] {
        let mut d = [0; RESOURCES];
        if self.begun {
            d = core::array::from_fn(|i| self.live[i].wrapping_sub(self.start[i]) as i64);
        }
        d[Res::Frames as usize] = frames.wrapping_sub(self.frames_start) as i64;
        self.open(frames);
        d
    }

    /// Whether a ceiling refused anything since this was last asked.
    pub fn take_refused(&mut self) -> bool {
        core::mem::take(&mut self.refused)
    }
}

impl Default for Meter {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lent_quota_comes_back_with_what_the_child_still_holds() {
        let mut parent = Account::new([100, 10, 10, 10, 10, 10, 10], [20, 1, 1, 0, 0, 0, 0]);
        let q = [50, 2, 2, 5, 0, 0, 0];
        assert_eq!(parent.lend(&[81, 0, 0, 0, 0, 0, 0]), Err(Error::Quota));
        assert_eq!(parent.used, [20, 1, 1, 0, 0, 0, 0], "a refused loan changes nothing");
        parent.lend(&q).unwrap();
        assert_eq!(parent.left(), [30, 7, 7, 5, 10, 10, 10]);
        let mut refused = parent;
        refused.repay(&q);
        assert_eq!(refused.used, [20, 1, 1, 0, 0, 0, 0], "a loan repaid is as if never made");
        // The child made itself, a thread, 12 frames and 2 endpoints; one endpoint
        // outlives it, its frames are freed.
        let mut child = Account::new(q, [12, 1, 1, 2, 0, 0, 0]);
        child.charge(&[-12, -1, -1, -1, 0, 0, 0]);
        parent.settle(&child);
        assert_eq!(parent.used, [20, 1, 1, 1, 0, 0, 0]);
    }

    #[test]
    fn freeing_what_another_paid_for_is_credited_to_who_frees_it() {
        let mut a = Account::new([10; RESOURCES], [0; RESOURCES]);
        a.charge(&[-3, 0, 0, 0, 0, 0, 0]);
        assert_eq!(a.left()[0], 13);
    }

    #[test]
    fn the_meter_refuses_past_the_ceiling_and_charges_the_difference() {
        let mut m = Meter::new();
        m.begin(&[u64::MAX; RESOURCES]);
        m.take(Res::Endpoints).unwrap();
        m.open(40);
        assert!(!m.changed(40));
        let mut left = [u64::MAX; RESOURCES];
        left[Res::Endpoints as usize] = 2;
        m.begin(&left);
        m.take(Res::Endpoints).unwrap();
        m.take(Res::Endpoints).unwrap();
        assert_eq!(m.take(Res::Endpoints), Err(Error::Quota));
        m.put(Res::Endpoints);
        m.take(Res::Threads).unwrap();
        assert!(m.changed(43));
        assert_eq!(m.flush(43), [3, 0, 1, 1, 0, 0, 0]);
        assert!(m.take_refused());
        assert!(!m.take_refused(), "asked once");
        assert_eq!(m.live(Res::Endpoints), 2);
        // A call that makes nothing changes nothing; one that frees is charged less than
        // nothing.
        m.open(43);
        assert_eq!(m.flush(43), [0; RESOURCES]);
        m.begin(&[0; RESOURCES]);
        m.put(Res::Endpoints);
        m.put(Res::Endpoints);
        assert_eq!(m.flush(41), [-2, 0, 0, -2, 0, 0, 0]);
    }
}
