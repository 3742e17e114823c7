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
use crate::kernel::{Kernel, Thread, ThreadState, Waiting, NONE};

impl Kernel {
    /// Tries the fast path for the current thread's system call `sysno` (its `rax`, which
    /// the arch layer read from the entry frame). `true`: done, the new current thread is
    /// ready to be entered; `false`: take the slow path (nothing changed). Every other
    /// call leaves before any table is touched.
    ///
    /// The tables are taken apart into locals first: their base and length then stay in
    /// registers across the stores below (through `self` they are reloaded after each).
    #[inline]
    pub fn fastpath(&mut self, sysno: u64) -> bool {
        if sysno != Sysno::Call as u64 && sysno != Sysno::ReplyRecv as u64 {
            return false;
        }
        let Kernel { tasks, threads, endpoints, runqs, cpu, current, .. } = self;
        let (threads, endpoints, cpu) = (&mut **threads, &mut **endpoints, *cpu);
        let c = *current as usize;
        // The current thread is the one that entered (or none: another CPU killed it).
        let Some(me) = threads.get(c) else { return false };
        let (slot, info) = (me.regs.rdi, MsgInfo(me.regs.rsi));
        if !info.registers_only() {
            return false;
        }
        let caps = &tasks[me.task as usize].caps;
        if sysno == Sysno::Call as u64 {
            // 2-4
            let Ok((e, cap)) = caps.lookup(slot, Kind::Endpoint, rights::SEND) else { return false };
            let ep = &mut endpoints[e as usize];
            if ep.waiting != Waiting::Receivers {
                return false;
            }
            let r = ep.head as usize;
            if threads[r].cpu as usize != cpu || runqs[cpu].top_priority().is_some_and(|p| p > threads[r].prio as usize)
            {
                return false;
            }
            // Dequeue the receiver (the head).
            let next = threads[r].ep_next;
            ep.head = next;
            if next == NONE {
                ep.tail = NONE;
                ep.waiting = Waiting::Nobody;
            }
            deliver(threads, c, r, cap.badge, info);
            threads[c].state = ThreadState::BlockedReply { server: r as u16 };
            let rt = &mut threads[r];
            rt.ep_next = NONE;
            rt.reply_to = c as u16;
            rt.state = ThreadState::Running;
            *current = r as u16;
            return true;
        }
        // ReplyRecv, 2-5.
        let Ok((e, _)) = caps.lookup(slot, Kind::Endpoint, rights::RECV) else { return false };
        let e = e as usize;
        let client = threads[c].reply_to as usize;
        // Senders queued (or the endpoint closed): the slow path.
        if matches!(endpoints[e].waiting, Waiting::Senders | Waiting::Closed)
            || client >= threads.len()
            || !matches!(threads[client].state, ThreadState::BlockedReply { server } if server as usize == c)
            || threads[client].cpu as usize != cpu
            || runqs[cpu].top_priority().is_some_and(|p| p > threads[client].prio as usize)
        {
            return false;
        }
        deliver(threads, c, client, 0, info);
        let me = &mut threads[c];
        me.reply_to = NONE;
        me.state = ThreadState::BlockedRecv { ep: e as u16 };
        super::queue_at(endpoints, threads, e, c, Waiting::Receivers);
        threads[client].state = ThreadState::Running;
        *current = client as u16;
        true
    }
}

/// Copies the words of `info`, a registers-only message ([`MsgInfo::registers_only`]: at
/// most 8 words), from `from` to `to`, with the badge. Only the message's words: the
/// receiver must not see the sender's other registers. Each word is loaded only where it
/// is copied: no words cost one test, eight cost two, and n between cost n + 2.
#[inline(always)]
fn deliver(threads: &mut [Thread], from: usize, to: usize, badge: u64, info: MsgInfo) {
    let received = info.registers_only_received().0;
    let n = (received >> 32) as usize;
    let (f, t) = (from, to);
    let dst = &mut threads[t].regs;
    dst.rax = 0;
    dst.rdi = badge;
    dst.rsi = received;
    if n == 0 {
        return;
    }
    if n == MSG_REGS {
        let s = threads[f].regs;
        let d = &mut threads[t].regs;
        (d.rdx, d.r10, d.r8, d.r9, d.r12, d.r13, d.r14, d.r15) = (s.rdx, s.r10, s.r8, s.r9, s.r12, s.r13, s.r14, s.r15);
        return;
    }
    threads[t].regs.rdx = threads[f].regs.rdx;
    if n > 1 {
        threads[t].regs.r10 = threads[f].regs.r10;
        if n > 2 {
            threads[t].regs.r8 = threads[f].regs.r8;
            if n > 3 {
                threads[t].regs.r9 = threads[f].regs.r9;
                if n > 4 {
                    threads[t].regs.r12 = threads[f].regs.r12;
                    if n > 5 {
                        threads[t].regs.r13 = threads[f].regs.r13;
                        if n > 6 {
                            threads[t].regs.r14 = threads[f].regs.r14;
                        }
                    }
                }
            }
        }
    }
}
