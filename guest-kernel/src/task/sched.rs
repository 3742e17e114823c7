//! Fixed-priority round-robin run queues: one FIFO per priority, a bitmap of non-empty
//! priorities, links in a table with one entry per thread (given at boot, no allocation).
//!
//! Invariants: a thread is in at most one queue; `pop` returns the first thread of the
//! highest non-empty priority; the bitmap bit of a priority is set iff its queue is
//! non-empty; thread numbers past the link table are never queued. And [`Next`], what a
//! system call does with its caller next: the one scheduling decision a handler makes.

use l4_abi::syscall::Error;

use super::thread::ThreadState;

/// Priorities 0 (lowest) to `PRIOS - 1`.
pub const PRIOS: usize = 32;
use crate::cap::NONE;

/// What a system call does with its caller next: the one way a handler says it
/// (`Kernel::carry_out` does it).
#[must_use]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    // Small enough to come back in two registers (`to` is a thread slot, as `current`).
    /// Back to the caller with this result in `rax` (values the handler wrote stay).
    Return(Result<(), Error>),
    /// The caller waits in this state (already queued where it waits); its result is
    /// written when it is woken.
    Block(ThreadState),
    /// The caller waits in `caller` and thread `to` runs now, on the caller's time slice
    /// (L4 direct switch; a thread of another CPU is made ready there).
    Switch { to: u16, caller: ThreadState },
    /// The caller lets equal priorities run first: result 0, back in its run queue.
    Yield,
    /// The caller is gone (it ended itself or its task).
    Gone,
}

/// One thread's place in a run queue.
#[derive(Clone, Copy, Debug)]
pub struct Link {
    next: u16,
    queued: bool,
}

impl Link {
    /// Not queued.
    pub const OUT: Link = Link { next: NONE, queued: false };
}

/// Run queues for as many threads as `links` has entries.
pub struct RunQueue {
    links: &'static mut [Link],
    head: [u16; PRIOS],
    tail: [u16; PRIOS],
    bitmap: u32,
}

impl RunQueue {
    /// Queues with room for no thread (until the kernel's tables are made).
    pub const fn empty() -> Self {
        RunQueue { links: &mut [], head: [NONE; PRIOS], tail: [NONE; PRIOS], bitmap: 0 }
    }

    /// Empty queues for threads `0..links.len()` (every link `Link::OUT`).
    pub fn new(links: &'static mut [Link]) -> Self {
        RunQueue { links, ..Self::empty() }
    }

    /// Appends thread `t` at priority `p` (no-op if already queued).
    pub fn push(&mut self, t: usize, p: usize) {
        if t >= self.links.len() || p >= PRIOS || self.links[t].queued {
            return;
        }
        self.links[t] = Link { next: NONE, queued: true };
        if self.tail[p] == NONE {
            self.head[p] = t as u16;
        } else {
            self.links[self.tail[p] as usize].next = t as u16;
        }
        self.tail[p] = t as u16;
        self.bitmap |= 1 << p;
    }

    /// The queued threads, highest priority first and each priority in its order (for
    /// tests that compare two kernels' scheduling state).
    #[cfg(test)]
    pub fn order(&self) -> Vec<(usize, u16)> {
        let mut out = Vec::new();
        for p in (0..PRIOS).rev() {
            let mut t = self.head[p];
            while t != NONE {
                out.push((p, t));
                t = self.links[t as usize].next;
            }
        }
        out
    }

    /// The highest non-empty priority.
    pub fn top_priority(&self) -> Option<usize> {
        if self.bitmap == 0 {
            None
        } else {
            Some(31 - self.bitmap.leading_zeros() as usize)
        }
    }

    /// Whether a queued thread has a higher priority than `prio` (one shift and one
    /// compare: the fast paths' check).
    #[inline(always)]
    pub fn outranks(&self, prio: u8) -> bool {
        (u64::from(self.bitmap) >> prio) > 1
    }

    /// Takes the first thread of the highest priority.
    pub fn pop(&mut self) -> Option<usize> {
        let p = self.top_priority()?;
        let t = self.head[p] as usize;
        self.head[p] = self.links[t].next;
        if self.head[p] == NONE {
            self.tail[p] = NONE;
            self.bitmap &= !(1 << p);
        }
        self.links[t].queued = false;
        Some(t)
    }

    /// Removes thread `t` (queued at priority `p`), wherever it is in its queue.
    pub fn remove(&mut self, t: usize, p: usize) {
        if t >= self.links.len() || p >= PRIOS || !self.links[t].queued {
            return;
        }
        let mut prev = NONE;
        let mut cur = self.head[p];
        while cur != NONE {
            if cur as usize == t {
                let nx = self.links[t].next;
                if prev == NONE {
                    self.head[p] = nx;
                } else {
                    self.links[prev as usize].next = nx;
                }
                if self.tail[p] == cur {
                    self.tail[p] = prev;
                }
                if self.head[p] == NONE {
                    self.bitmap &= !(1 << p);
                }
                self.links[t].queued = false;
                return;
            }
            prev = cur;
            cur = self.links[cur as usize].next;
        }
    }

    pub fn is_queued(&self, t: usize) -> bool {
        self.links.get(t).is_some_and(|l| l.queued)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queues(n: usize) -> RunQueue {
        RunQueue::new(Box::leak(vec![Link::OUT; n].into_boxed_slice()))
    }

    #[test]
    fn highest_priority_first_round_robin_within() {
        let mut q = queues(8);
        q.push(1, 3);
        q.push(2, 5);
        q.push(3, 3);
        q.push(4, 5);
        q.push(2, 5); // already queued: ignored
        assert_eq!(q.top_priority(), Some(5));
        assert_eq!(q.pop(), Some(2));
        assert_eq!(q.pop(), Some(4));
        q.push(2, 5);
        assert_eq!(q.pop(), Some(2));
        q.remove(1, 3);
        assert_eq!(q.pop(), Some(3));
        assert_eq!(q.pop(), None);
        assert_eq!(q.top_priority(), None);
    }

    #[test]
    fn outranks_is_top_priority_above() {
        for mask in [0u32, 1, 0b1010, 1 << 31, 0x8000_0001, u32::MAX, 0x0f0f_0000] {
            let mut q = queues(32);
            for p in 0..PRIOS {
                if mask & (1 << p) != 0 {
                    q.push(p, p);
                }
            }
            for prio in 0..PRIOS as u8 {
                let want = q.top_priority().is_some_and(|p| p > usize::from(prio));
                assert_eq!(q.outranks(prio), want, "queued {mask:#x}, prio {prio}");
            }
        }
    }

    #[test]
    fn remove_from_middle_and_tail() {
        let mut q = queues(8);
        for t in 0..4 {
            q.push(t, 0);
        }
        q.remove(3, 0);
        q.remove(1, 0);
        q.push(5, 0);
        assert_eq!((q.pop(), q.pop(), q.pop(), q.pop()), (Some(0), Some(2), Some(5), None));
    }

    #[test]
    fn a_thread_past_the_link_table_is_never_queued() {
        let mut q = queues(4);
        q.push(4, 1);
        q.push(usize::from(u16::MAX), 1);
        assert!(!q.is_queued(4));
        assert_eq!(q.top_priority(), None);
        q.remove(4, 1);
        assert_eq!(q.pop(), None);
    }
}
