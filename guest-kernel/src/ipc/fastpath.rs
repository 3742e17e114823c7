//! The IPC fast path: `Call` and `ReplyRecv` with a message in registers, straight to a
//! partner that is already waiting, in the fewest ring-0 instructions we can manage.
//!
//! Taken only when all of these hold (anything else takes the slow path in `ipc/mod.rs`,
//! which has the same semantics):
//!
//! `Call`:
//! 1. the message has at most 8 words (registers only) and carries no capability and no
//!    pages;
//! 2. the slot in `rdi` holds an endpoint capability with SEND;
//! 3. a receiver is already waiting on that endpoint;
//! 4. the receiver lives on this CPU, and no ready thread here has a higher priority.
//!
//! `ReplyRecv`:
//! 1. the reply has at most 8 words and carries no capability;
//! 2. the caller is waiting for this thread's reply;
//! 3. the slot in `rdi` holds an endpoint capability with RECV;
//! 4. no sender is queued on that endpoint (otherwise this thread would receive at once);
//! 5. the caller lives on this CPU, and no ready thread here has a higher priority.
//!
//! Then it copies the words register to register, fixes the two threads' states, and
//! makes the partner current: no run-queue operation, no scheduler pass (L4's direct
//! switch); the partner runs on the rest of the caller's time slice. The arch layer then
//! switches the address space and returns to the partner.

use l4_abi::syscall::{rights, MsgInfo, Sysno, MSG_REGS};

use crate::cap::Kind;
use crate::kernel::{Kernel, ThreadState, Waiting, NONE};

impl Kernel {
    /// Tries the fast path for the current thread's system call. `true`: done, the new
    /// current thread is ready to be entered; `false`: take the slow path (nothing changed).
    #[inline]
    pub fn fastpath(&mut self) -> bool {
        let c = self.current as usize;
        let Some(me) = self.threads.get(c) else { return false };
        let sysno = me.regs.rax;
        if sysno != Sysno::Call as u64 && sysno != Sysno::ReplyRecv as u64 {
            return false;
        }
        let (slot, info) = (me.regs.rdi, MsgInfo(me.regs.rsi));
        if info.cap().is_some() || info.pages().is_some() || info.words() > MSG_REGS {
            return false;
        }
        let caps = &self.tasks[me.task as usize].caps;
        if sysno == Sysno::Call as u64 {
            // 2-4
            let Ok((e, cap)) = caps.lookup(slot, Kind::Endpoint, rights::SEND) else { return false };
            let e = e as usize;
            if self.endpoints[e].waiting != Waiting::Receivers {
                return false;
            }
            let r = self.endpoints[e].head as usize;
            if self.threads[r].cpu as usize != self.cpu
                || self.runqs[self.cpu].top_priority().is_some_and(|p| p > self.threads[r].prio as usize)
            {
                return false;
            }
            // Dequeue the receiver (the head).
            let next = self.threads[r].ep_next;
            self.endpoints[e].head = next;
            if next == NONE {
                self.endpoints[e].tail = NONE;
                self.endpoints[e].waiting = Waiting::Nobody;
            }
            self.threads[r].ep_next = NONE;
            self.deliver(c, r, cap.badge, info);
            self.threads[c].state = ThreadState::BlockedReply { server: r as u16 };
            self.threads[r].reply_to = c as u16;
            self.threads[r].state = ThreadState::Running;
            self.current = r as u16;
            return true;
        }
        // ReplyRecv, 2-5.
        let Ok((e, _)) = caps.lookup(slot, Kind::Endpoint, rights::RECV) else { return false };
        let e = e as usize;
        let client = self.threads[c].reply_to as usize;
        // Senders queued (or the endpoint closed): the slow path.
        if matches!(self.endpoints[e].waiting, Waiting::Senders | Waiting::Closed)
            || client >= self.threads.len()
            || !matches!(self.threads[client].state, ThreadState::BlockedReply { server } if server as usize == c)
            || self.threads[client].cpu as usize != self.cpu
            || self.runqs[self.cpu].top_priority().is_some_and(|p| p > self.threads[client].prio as usize)
        {
            return false;
        }
        self.deliver(c, client, 0, info);
        self.threads[c].reply_to = NONE;
        self.threads[c].state = ThreadState::BlockedRecv { ep: e as u16 };
        self.ep_push(e, c, Waiting::Receivers);
        self.threads[client].state = ThreadState::Running;
        self.current = client as u16;
        true
    }

    /// Copies `info.words()` message registers from `from` to `to`, with the badge.
    #[inline(always)]
    fn deliver(&mut self, from: usize, to: usize, badge: u64, info: MsgInfo) {
        let n = info.words();
        let s = &self.threads[from].regs;
        let w = [s.rdx, s.r10, s.r8, s.r9, s.r12, s.r13, s.r14, s.r15];
        let dst = &mut self.threads[to].regs;
        dst.rax = 0;
        dst.rdi = badge;
        dst.rsi = MsgInfo::new(info.label(), n).0;
        // Only the message's words: the receiver must not see the sender's other registers.
        if n > 0 {
            dst.rdx = w[0];
        }
        if n > 1 {
            dst.r10 = w[1];
        }
        if n > 2 {
            dst.r8 = w[2];
        }
        if n > 3 {
            dst.r9 = w[3];
        }
        if n > 4 {
            dst.r12 = w[4];
        }
        if n > 5 {
            dst.r13 = w[5];
        }
        if n > 6 {
            dst.r14 = w[6];
        }
        if n > 7 {
            dst.r15 = w[7];
        }
    }
}
