//! Threads, the kernel's unit of execution: a thread's saved machine state, where it is
//! (running, ready, blocked on what) and what IPC needs of it. The operations on threads
//! are in [`super::lifecycle`] (making and ending them), [`super::sched`] (run queues)
//! and `ipc/` (blocking and waking).
//!
//! Invariants: a `Free` slot has id 0 and is in no queue; a thread's `task` is a live
//! task while the thread is not `Free`; `root` is that task's page-table root; a thread
//! in an endpoint queue is `BlockedSend` or `BlockedRecv` on that endpoint, and `ep_next`
//! links it there (`NONE` at the tail and when it is in no queue); `reply_to` names the
//! client a server owes a reply (`NONE`: none).

pub use l4_abi::layout::thread_ipc_buffer;

use crate::cap::NONE;
use crate::machine::{FpuState, UserRegs};

/// Where a thread is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ThreadState {
    #[default]
    Free,
    Running,
    Ready,
    /// Queued on an endpoint to send (`call`: then wait for the reply).
    BlockedSend {
        ep: u16,
        call: bool,
    },
    /// Queued on an endpoint to receive.
    BlockedRecv {
        ep: u16,
    },
    /// Waiting for `server` to reply.
    BlockedReply {
        server: u16,
    },
    /// Waiting for a bit in a notification.
    BlockedWait {
        n: u16,
    },
    /// Waiting in `RingEnter` on ring `r`.
    BlockedRing {
        r: u16,
    },
    /// Stopped by a fault, never runs again.
    Faulted,
}

/// A thread.
#[derive(Clone, Copy)]
pub struct Thread {
    pub state: ThreadState,
    pub task: u16,
    /// The task's page-table root (a copy, for the context switch).
    pub root: u64,
    pub prio: u8,
    pub regs: UserRegs,
    pub fpu: FpuState,
    /// The endpoint and badge fault messages go to.
    pub fault_ep: Option<(u16, u64)>,
    /// The client this thread (a server) must reply to.
    pub reply_to: u16,
    /// The badge of the capability a blocked sender used.
    pub send_badge: u64,
    /// Set while this thread's pending "send" is a fault message.
    pub fault: Option<[u64; 5]>,
    /// Next thread in the endpoint queue.
    pub ep_next: u16,
    /// Unique over the kernel's lifetime (never reused, unlike the slot); 0 for free slots.
    pub id: u64,
    /// The CPU this thread runs on (its affinity).
    pub cpu: u8,
    /// Where pages sent to this thread land (`SetRecvWindow`): address and page count.
    pub win_va: u64,
    pub win_pages: u64,
    /// The frame of this thread's IPC buffer (message words 8 and up).
    pub ipc_buffer: u64,
}

impl Thread {
    pub const FREE: Thread = Thread {
        state: ThreadState::Free,
        task: 0,
        root: 0,
        prio: 0,
        regs: UserRegs::ZERO,
        fpu: FpuState::INIT,
        fault_ep: None,
        reply_to: NONE,
        send_badge: 0,
        fault: None,
        ep_next: NONE,
        id: 0,
        cpu: 0,
        win_va: 0,
        win_pages: 0,
        ipc_buffer: 0,
    };
}
