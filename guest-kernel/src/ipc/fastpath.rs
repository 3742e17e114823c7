//! The IPC fast path: `Call` and `ReplyRecv` with a message in registers, straight to a
//! partner that is already waiting, in the fewest ring-0 instructions we can manage.
//!
//! Taken only when all of these hold (anything else takes the slow path in `ipc/slowpath.rs`,
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

use l4_abi::syscall::{rights, MsgInfo, Sysno};

use super::Waiting;
use crate::cap::Kind;
use crate::cap::NONE;
use crate::kernel::Kernel;
use crate::machine;
use crate::task::thread::{Thread, ThreadState};

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
        let (slot, info) = me.regs.first_args();
        let info = MsgInfo(info);
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

/// Tells `to` of the message of `from` (a registers-only message, [`MsgInfo::registers_only`]:
/// at most 8 words), with the badge, and copies its words ([`machine::copy_words`]).
#[inline(always)]
fn deliver(threads: &mut [Thread], from: usize, to: usize, badge: u64, info: MsgInfo) {
    let received = info.registers_only_received().0;
    threads[to].regs.set_received(badge, received);
    machine::copy_words(threads, |t| &mut t.regs, from, to, (received >> 32) as usize);
}
