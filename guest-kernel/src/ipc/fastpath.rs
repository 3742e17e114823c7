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
//! Then it passes the words on, fixes the two threads' states, and makes the partner
//! current: no run-queue operation, no scheduler pass (L4's direct switch); the partner
//! runs on the rest of the caller's time slice. The arch layer then switches the address
//! space and returns to the partner. A full message (8 words) is not copied from TCB to
//! TCB: the fast path says whose saved registers hold the partner's message words (the
//! sender's), and the arch layer's exit loads them from there, while this CPU still holds
//! the kernel (the sender waits, but another CPU could kill it once the lock is free).
//! Shorter messages are copied into the partner's registers (only their words may reach
//! it), which then hold its message words.

//! The code indexes the tables without bounds checks (each check is a compare and a branch
//! of the budget): every index it uses is one the kernel's invariants keep in range, and
//! `debug_assert!`s (on in the host tests) say which. `current` is `NONE` or a thread's
//! index; so are an endpoint's queue links, a thread's `reply_to` and `ep_next`; a
//! thread's `task` indexes the task table, an endpoint capability's index the endpoint
//! table (capabilities name live objects); `cpu` is below `MAX_CPUS`. The two threads
//! are different (one runs, the other waits), so their references never overlap.

#![allow(unsafe_code)]
use l4_abi::syscall::{rights, MsgInfo, Sysno, MSG_REGS};

use super::Waiting;
use crate::cap::Kind;
use crate::cap::NONE;
use crate::kernel::Kernel;
use crate::machine::{self, UserRegs};
use crate::task::thread::{Thread, ThreadState};

/// Where the fast path went: from thread `from` (which entered, and now waits) to thread
/// `to` (now the current thread), to be entered with its message registers (see
/// [`UserRegs::word`]) taken from thread `words_in`'s saved registers and every other
/// register from its own. `words_in` is `from` for a full message, else `to`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Switch {
    pub from: u16,
    pub to: u16,
    pub words_in: u16,
}

impl Kernel {
    /// Tries the fast path for the current thread's system call `sysno` (its `rax`, which
    /// the arch layer read from the entry frame). `None`: take the slow path (nothing
    /// changed); else the new current thread and where its message words are
    /// ([`Switch`]). Every other call leaves before any table is touched.
    #[inline]
    pub fn fastpath(&mut self, sysno: u64) -> Option<Switch> {
        let call = sysno == Sysno::Call as u64;
        if !call && sysno != Sysno::ReplyRecv as u64 {
            return None;
        }
        // None while the entry is probed and the counter calibrated, or after another
        // CPU killed the thread that entered.
        let c = self.current as usize;
        if c == NONE as usize {
            return None;
        }
        let Kernel { tasks, threads, endpoints, runqs, cpu, current, .. } = self;
        let (cpu, th) = (*cpu, Table(threads.as_mut_ptr(), threads.len()));
        debug_assert!(cpu < runqs.len());
        // SAFETY: `cpu` is this CPU's index, below MAX_CPUS (see the module doc).
        let runq = unsafe { runqs.get_unchecked(cpu) };
        // SAFETY: `current` is a thread's index (checked against NONE above), and no other
        // reference to a thread is live.
        let me = unsafe { th.get(c) };
        let (slot, info) = me.regs.first_args();
        let info = MsgInfo(info);
        if !info.registers_only() {
            return None;
        }
        debug_assert!((me.task as usize) < tasks.len());
        // SAFETY: a thread's task indexes the task table.
        let caps = unsafe { &tasks.get_unchecked(me.task as usize).caps };
        let received = info.registers_only_received().0;
        let words = (received >> 32) as usize;
        if call {
            // 2-4
            let Ok((e, cap)) = caps.lookup(slot, Kind::Endpoint, rights::SEND) else { return None };
            debug_assert!((e as usize) < endpoints.len());
            // SAFETY: an endpoint capability names a live endpoint.
            let ep = unsafe { endpoints.get_unchecked_mut(e as usize) };
            if ep.waiting != Waiting::Receivers {
                return None;
            }
            let r = ep.head as usize;
            // SAFETY: with receivers waiting, the head is a thread's index; it waits, so it
            // is not `me`.
            let rt = unsafe { th.get(r) };
            if rt.cpu as usize != cpu || runq.outranks(rt.prio) {
                return None;
            }
            // Dequeue the receiver (the head).
            let next = rt.ep_next;
            ep.head = next;
            if next == NONE {
                ep.tail = NONE;
                ep.waiting = Waiting::Nobody;
            }
            rt.regs.set_received(cap.badge, received);
            me.state = ThreadState::BlockedReply { server: r as u16 };
            rt.ep_next = NONE;
            rt.reply_to = c as u16;
            rt.state = ThreadState::Running;
            *current = r as u16;
            return Some(Switch { from: c as u16, to: r as u16, words_in: pass(&me.regs, &mut rt.regs, words, c, r) });
        }
        // ReplyRecv, 2-5.
        let Ok((e, _)) = caps.lookup(slot, Kind::Endpoint, rights::RECV) else { return None };
        let client = me.reply_to as usize;
        debug_assert!((e as usize) < endpoints.len());
        // SAFETY: as for `Call`.
        let ep = unsafe { endpoints.get_unchecked_mut(e as usize) };
        // Senders queued or the endpoint closed (one compare: they are the last two), or
        // nobody to answer: the slow path.
        if ep.waiting >= Waiting::Senders || client == NONE as usize {
            return None;
        }
        // SAFETY: `reply_to` is NONE (checked) or a thread's index; the caller waits for
        // `me` (checked next) or the slow path answers, so it is not `me`.
        let ct = unsafe { th.get(client) };
        if !matches!(ct.state, ThreadState::BlockedReply { server } if server as usize == c)
            || ct.cpu as usize != cpu
            || runq.outranks(ct.prio)
        {
            return None;
        }
        ct.regs.set_received(0, received);
        let words_in = pass(&me.regs, &mut ct.regs, words, c, client);
        me.reply_to = NONE;
        me.state = ThreadState::BlockedRecv { ep: e };
        // Queue `me` at the tail as a receiver.
        me.ep_next = NONE;
        if ep.tail == NONE {
            ep.head = c as u16;
        } else {
            // SAFETY: a queue link is a thread's index; the tail waits on the endpoint,
            // so it is neither `me` (running) nor the client (waiting for a reply).
            unsafe { th.get(ep.tail as usize) }.ep_next = c as u16;
        }
        ep.tail = c as u16;
        ep.waiting = Waiting::Receivers;
        ct.state = ThreadState::Running;
        *current = client as u16;
        Some(Switch { from: c as u16, to: client as u16, words_in })
    }

    /// [`Kernel::fastpath`] for callers that do not leave through the arch layer's exit
    /// ([`Kernel::fast_syscall`], the host tests): the message words are copied here from
    /// where the exit would load them. `true`: taken.
    pub fn fastpath_copying(&mut self, sysno: u64) -> bool {
        let Some(Switch { to, words_in, .. }) = self.fastpath(sysno) else { return false };
        if let Ok([s, d]) = self.threads.get_disjoint_mut([words_in as usize, to as usize]) {
            machine::copy_words(&s.regs, &mut d.regs, MSG_REGS);
        }
        true
    }
}

/// Passes `words` message words from `from` (thread `c`'s registers) to `to` (thread
/// `t`'s); returns the thread whose registers hold them now: a full message stays where
/// it is for the exit, shorter ones are copied.
#[inline(always)]
fn pass(from: &UserRegs, to: &mut UserRegs, words: usize, c: usize, t: usize) -> u16 {
    match words {
        0 => t as u16,
        MSG_REGS => c as u16,
        n => {
            machine::copy_words(from, to, n);
            t as u16
        }
    }
}

/// The thread table, reached by index without a bounds check.
#[derive(Clone, Copy)]
struct Table(*mut Thread, usize);

impl Table {
    /// Thread `i`.
    ///
    /// # Safety
    /// `i` is below the table's length, and no other live reference reaches thread `i`
    /// while the returned one is used.
    #[inline(always)]
    unsafe fn get<'a>(self, i: usize) -> &'a mut Thread {
        debug_assert!(i < self.1);
        // SAFETY: in range (the caller's promise), and unaliased (likewise).
        unsafe { &mut *self.0.add(i) }
    }
}
