//! IPC's objects: endpoints with their queues of blocked threads, and notifications.
//! The operations on them are the slow path (`slowpath`: send, receive, call,
//! reply-receive, messages with capabilities, pages and more than 8 words), the fast path
//! (`fastpath`: call and reply-receive in registers) and `notify` (signal and wait).
//!
//! Invariants: an endpoint's queue holds blocked senders or blocked receivers, never
//! both (`waiting` says which, `Nobody` when it is empty, `head` and `tail` `NONE`); a
//! thread is in at most one endpoint queue, linked through its `ep_next`; a live object
//! (`refs` > 0) is named by that many capabilities (and, for endpoints, threads' fault
//! endpoints); a notification has at most one waiter, and only while its bits are 0.

pub mod fastpath;
mod notify;
mod slowpath;

use crate::cap::NONE;
use crate::task::thread::Thread;

/// Who waits on an endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum Waiting {
    #[default]
    Nobody,
    Receivers,
    Senders,
    /// The task that created the endpoint died: every send and receive on it fails with
    /// `PartnerGone` (so callers of a crashed server get an error instead of waiting for
    /// ever), until its last capability goes. After `Senders`, so that "senders queued
    /// or closed" is one comparison on the fast path.
    Closed,
}

/// An IPC endpoint: a FIFO of blocked senders or of blocked receivers.
#[derive(Clone, Copy, Debug)]
pub struct Endpoint {
    /// Capabilities naming it (0: free).
    pub refs: u32,
    /// The task that created it (its server): when that task dies the endpoint closes.
    pub owner: u16,
    pub waiting: Waiting,
    pub head: u16,
    pub tail: u16,
}

impl Endpoint {
    pub(crate) const FREE: Endpoint =
        Endpoint { refs: 0, owner: NONE, waiting: Waiting::Nobody, head: NONE, tail: NONE };
}

/// A notification: signal bits and at most one waiting thread.
#[derive(Clone, Copy, Debug)]
pub struct Notification {
    /// Capabilities naming it (0: free).
    pub refs: u32,
    pub bits: u64,
    pub waiter: u16,
}

impl Notification {
    pub(crate) const FREE: Notification = Notification { refs: 0, bits: 0, waiter: NONE };
}

/// Appends thread `t` to endpoint `e`'s queue of `kind` (senders or receivers).
#[inline(always)]
pub(crate) fn queue_at(endpoints: &mut [Endpoint], threads: &mut [Thread], e: usize, t: usize, kind: Waiting) {
    let ep = &mut endpoints[e];
    ep.waiting = kind;
    threads[t].ep_next = NONE;
    if ep.tail == NONE {
        ep.head = t as u16;
    } else {
        threads[ep.tail as usize].ep_next = t as u16;
    }
    ep.tail = t as u16;
}

/// Takes the first thread off endpoint `e`'s queue.
#[inline]
pub(crate) fn dequeue(endpoints: &mut [Endpoint], threads: &mut [Thread], e: usize) -> Option<usize> {
    let ep = &mut endpoints[e];
    if ep.head == NONE {
        return None;
    }
    let t = ep.head as usize;
    ep.head = threads[t].ep_next;
    if ep.head == NONE {
        ep.tail = NONE;
        ep.waiting = Waiting::Nobody;
    }
    threads[t].ep_next = NONE;
    Some(t)
}

/// Takes thread `t` out of endpoint `e`'s queue, wherever it is (nothing if it is not
/// there).
pub(crate) fn unqueue(endpoints: &mut [Endpoint], threads: &mut [Thread], e: usize, t: usize) {
    let ep = &mut endpoints[e];
    let (mut prev, mut cur) = (NONE, ep.head);
    while cur != NONE {
        if cur as usize == t {
            let next = threads[t].ep_next;
            if prev == NONE {
                ep.head = next;
            } else {
                threads[prev as usize].ep_next = next;
            }
            if ep.tail == cur {
                ep.tail = prev;
            }
            if ep.head == NONE {
                ep.waiting = Waiting::Nobody;
            }
            threads[t].ep_next = NONE;
            return;
        }
        prev = cur;
        cur = threads[cur as usize].ep_next;
    }
}
