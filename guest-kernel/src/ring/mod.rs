//! The kernel side of ring channels (`l4_abi::ring`): one memory object with a
//! submission and a completion ring, shared by a client and a server, and the one call
//! both sides use, `RingEnter`.
//!
//! The kernel never reads ring entries, only the four indices in the object's first page,
//! and never trusts them: an impossible `tail - head` is reported as `BadArgument`.
//! Invariants: at most one thread waits on each side of a ring; a waiter is woken when
//! its condition holds at the other side's `RingEnter`, or with `PartnerGone` when the
//! ring dies; checks and sleeps happen under the kernel lock, so a wake-up cannot be lost
//! between a side's check and its sleep.

mod enter;

use crate::cap::NONE;

/// A ring channel.
#[derive(Clone, Copy, Debug)]
pub struct Ring {
    /// Capabilities naming it (0: free).
    pub refs: u32,
    /// Of those, the ones with SEND (the client side): when they are all gone, a waiting
    /// server is told (`PartnerGone`), so a client that dies mid-batch cannot leave its
    /// server asleep for ever.
    pub send_refs: u32,
    /// Of those, the ones with RECV (the server side): when they are all gone, a waiting
    /// client is told.
    pub recv_refs: u32,
    /// Its memory object (the ring holds one reference to it).
    pub mem: u16,
    pub entries: u32,
    /// The client waiting for completions, and how many it wants.
    client: u16,
    client_min: u32,
    /// The server waiting for submissions, and how many it wants.
    server: u16,
    server_min: u32,
}

impl Ring {
    pub const FREE: Ring = Ring {
        refs: 0,
        send_refs: 0,
        recv_refs: 0,
        mem: 0,
        entries: 0,
        client: NONE,
        client_min: 0,
        server: NONE,
        server_min: 0,
    };

    /// Thread `t` is going away: it waits here no more.
    pub fn forget(&mut self, t: u16) {
        if self.client == t {
            self.client = NONE;
        }
        if self.server == t {
            self.server = NONE;
        }
    }
}
