//! Fixed-priority round-robin run queues: one FIFO per priority, a bitmap of non-empty
//! priorities, intrusive links (no allocation).
//!
//! Invariants: a thread is in at most one queue; `pop` returns the first thread of the
//! highest non-empty priority; the bitmap bit of a priority is set iff its queue is
//! non-empty.

/// Priorities 0 (lowest) to `PRIOS - 1`.
pub const PRIOS: usize = 32;
const NONE: u16 = u16::MAX;

/// Run queues for up to `N` threads.
pub struct RunQueue<const N: usize> {
    next: [u16; N],
    queued: [bool; N],
    head: [u16; PRIOS],
    tail: [u16; PRIOS],
    bitmap: u32,
}

impl<const N: usize> Default for RunQueue<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> RunQueue<N> {
    pub const fn new() -> Self {
        RunQueue { next: [NONE; N], queued: [false; N], head: [NONE; PRIOS], tail: [NONE; PRIOS], bitmap: 0 }
    }

    /// Appends thread `t` at priority `p` (no-op if already queued).
    pub fn push(&mut self, t: usize, p: usize) {
        if t >= N || p >= PRIOS || self.queued[t] {
            return;
        }
        self.queued[t] = true;
        self.next[t] = NONE;
        if self.tail[p] == NONE {
            self.head[p] = t as u16;
        } else {
            self.next[self.tail[p] as usize] = t as u16;
        }
        self.tail[p] = t as u16;
        self.bitmap |= 1 << p;
    }

    /// The highest non-empty priority.
    pub fn top_priority(&self) -> Option<usize> {
        if self.bitmap == 0 {
            None
        } else {
            Some(31 - self.bitmap.leading_zeros() as usize)
        }
    }

    /// Takes the first thread of the highest priority.
    pub fn pop(&mut self) -> Option<usize> {
        let p = self.top_priority()?;
        let t = self.head[p] as usize;
        self.head[p] = self.next[t];
        if self.head[p] == NONE {
            self.tail[p] = NONE;
            self.bitmap &= !(1 << p);
        }
        self.queued[t] = false;
        Some(t)
    }

    /// Removes thread `t` (queued at priority `p`), wherever it is in its queue.
    pub fn remove(&mut self, t: usize, p: usize) {
        if t >= N || p >= PRIOS || !self.queued[t] {
            return;
        }
        let mut prev = NONE;
        let mut cur = self.head[p];
        while cur != NONE {
            if cur as usize == t {
                let nx = self.next[t];
                if prev == NONE {
                    self.head[p] = nx;
                } else {
                    self.next[prev as usize] = nx;
                }
                if self.tail[p] == cur {
                    self.tail[p] = prev;
                }
                if self.head[p] == NONE {
                    self.bitmap &= !(1 << p);
                }
                self.queued[t] = false;
                return;
            }
            prev = cur;
            cur = self.next[cur as usize];
        }
    }

    pub fn is_queued(&self, t: usize) -> bool {
        t < N && self.queued[t]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn highest_priority_first_round_robin_within() {
        let mut q: RunQueue<8> = RunQueue::new();
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
    fn remove_from_middle_and_tail() {
        let mut q: RunQueue<8> = RunQueue::new();
        for t in 0..4 {
            q.push(t, 0);
        }
        q.remove(3, 0);
        q.remove(1, 0);
        q.push(5, 0);
        assert_eq!((q.pop(), q.pop(), q.pop(), q.pop()), (Some(0), Some(2), Some(5), None));
    }
}
