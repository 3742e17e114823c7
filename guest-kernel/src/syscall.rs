//! The system-call layer: each number mapped to its handler, with the arguments decoded
//! once from registers by their `l4_abi::args` definition (which l4-rt encodes with), and
//! the handler's decision ([`Next`]) carried out in one place.
//!
//! Invariants: a handler either returns an error having changed nothing, or does what
//! its call says; only [`Kernel::carry_out`] writes a caller's result and takes it off
//! the CPU; every capability a call looks up is in [`CAP_ARGS`] with the kind and rights
//! it needs (the host tests try each).

use l4_abi::args::{self as a, Args, Regs, Results};
use l4_abi::syscall::{rights, Error, MsgInfo, Sysno, RING_SERVER};

use crate::cap::Kind;
use crate::kernel::Kernel;
use crate::platform::Platform;
use crate::task::sched::Next;
use crate::task::thread::ThreadState;

/// A capability argument of a system call: which register holds its slot, the kind of
/// object it must name and the rights it must have (`when`: under which other arguments).
/// The handlers look each one up with exactly this (`CapTable::lookup`); the host tests
/// try every row with each right missing and with each wrong kind, and check that
/// docs/ARCHITECTURE.md's table says the same.
#[derive(Clone, Copy, Debug)]
pub struct CapArg {
    pub call: Sysno,
    /// 0 rdi, 1 rsi, 2 rdx, 3 r10.
    pub arg: usize,
    pub kind: Kind,
    pub needs: u64,
    /// Another argument (register index as `arg`, value) that makes the call need this,
    /// or `None` always.
    pub when: Option<(usize, u64)>,
}

const fn cap_arg(call: Sysno, arg: usize, kind: Kind, needs: u64) -> CapArg {
    CapArg { call, arg, kind, needs, when: None }
}

/// `a` for a message that carries a capability (`MsgInfo` in `rsi` with one).
const fn carrying_cap(a: CapArg) -> CapArg {
    CapArg { when: Some((1, MsgInfo::new(0, 0).with_cap(0).0)), ..a }
}

/// Every capability a system call looks up (CapDerive, CapDelete, CapGrant's second
/// and TaskSpawn's parent capability are only copied or deleted: any capability will do).
pub const CAP_ARGS: &[CapArg] = &[
    cap_arg(Sysno::Send, 0, Kind::Endpoint, rights::SEND),
    carrying_cap(cap_arg(Sysno::Send, 0, Kind::Endpoint, rights::SEND | rights::GRANT)),
    cap_arg(Sysno::Call, 0, Kind::Endpoint, rights::SEND),
    carrying_cap(cap_arg(Sysno::Call, 0, Kind::Endpoint, rights::SEND | rights::GRANT)),
    cap_arg(Sysno::SendNB, 0, Kind::Endpoint, rights::SEND),
    carrying_cap(cap_arg(Sysno::SendNB, 0, Kind::Endpoint, rights::SEND | rights::GRANT)),
    cap_arg(Sysno::Recv, 0, Kind::Endpoint, rights::RECV),
    cap_arg(Sysno::RecvNB, 0, Kind::Endpoint, rights::RECV),
    cap_arg(Sysno::ReplyRecv, 0, Kind::Endpoint, rights::RECV),
    cap_arg(Sysno::Signal, 0, Kind::Notification, rights::SEND),
    cap_arg(Sysno::Wait, 0, Kind::Notification, rights::RECV),
    cap_arg(Sysno::MemMapObj, 0, Kind::Memory, rights::SEND),
    cap_arg(Sysno::RingEnter, 0, Kind::Ring, rights::SEND),
    CapArg { when: Some((3, RING_SERVER)), ..cap_arg(Sysno::RingEnter, 0, Kind::Ring, rights::RECV) },
    cap_arg(Sysno::TaskSpawn, 0, Kind::BootFile, rights::SEND),
    cap_arg(Sysno::TaskSpawn, 2, Kind::Endpoint, rights::SEND),
    cap_arg(Sysno::CapGrant, 0, Kind::Task, rights::GRANT),
    cap_arg(Sysno::TaskKill, 0, Kind::Task, rights::CONTROL),
    cap_arg(Sysno::SetAffinity, 0, Kind::Task, rights::CONTROL),
    cap_arg(Sysno::MachineExit, 0, Kind::Machine, rights::CONTROL),
    cap_arg(Sysno::Trace, 0, Kind::Machine, rights::TRACE),
];

impl Kernel {
    /// Handles the system call in the current thread's registers, then reschedules.
    ///
    /// The calls that cannot make or free anything ([`Kernel::unmetered`]) are handled
    /// here; every other call ([`Kernel::metered`]) runs out of line with the meter open
    /// on its caller's account (`crate::quota`). Out of line, so that this function, which
    /// the null call's cost is mostly made of, saves and restores only the registers the
    /// small calls need.
    pub fn syscall<P: Platform>(&mut self, p: &mut P) {
        let Some(c) = self.current() else { return };
        let next = match Sysno::from_u64(self.threads[c].regs.sysno()) {
            None => Next::Return(Err(Error::InvalidSyscall)),
            Some(s) => match self.unmetered(p, c, s) {
                Some(next) => next,
                // A tail call: this function then saves no registers for it.
                None => return self.metered(p, c, s),
            },
        };
        self.carry_out(c, next);
        self.reschedule();
    }

    /// A call that may create or free something (every call [`Kernel::unmetered`] does
    /// not take), run with the meter open on its caller's account, carried out, and the
    /// CPU rescheduled.
    /// Its arguments are decoded here, not by the caller: passed in, they would be
    /// loaded and spilled for the small calls too.
    #[inline(never)]
    fn metered<P: Platform>(&mut self, p: &mut P, c: usize, s: Sysno) {
        self.open_account(self.threads[c].task as usize);
        let r = self.threads[c].regs.args();
        let next = self.dispatch(p, c, s, &r);
        let next = self.close_metered(next);
        self.carry_out(c, next);
        self.reschedule();
    }

    /// The system calls answered on the spot, before [`Kernel::syscall`]: `Call` and
    /// `ReplyRecv` that qualify for the IPC fast path ([`Kernel::fastpath`]), and `Null`
    /// ([`Kernel::fast_null`]). `true`: done, the current thread (perhaps another one now)
    /// is to be entered; `false`: take [`Kernel::syscall`], nothing changed. Same results
    /// as the slow path (host test `the_fast_path_and_the_slow_path_give_identical_results`).
    /// For the host tests: the arch layer calls the two directly (`syscall_null`,
    /// `syscall_ipc`) and has its exit load a full message's words, which this copies.
    #[inline(always)]
    pub fn fast_syscall<P: Platform>(&mut self, p: &mut P, sysno: u64) -> bool {
        if sysno == Sysno::Null as u64 {
            return self.fast_null(p);
        }
        self.fastpath_copying(sysno)
    }

    /// `Null` on the spot (the floor every call pays: entry, this, exit) when nothing of
    /// a higher priority waits on this CPU; `false` for the slow path (a higher priority
    /// waiting: it runs that).
    #[inline(always)]
    pub fn fast_null<P: Platform>(&mut self, p: &mut P) -> bool {
        let c = self.current as usize;
        let Some(me) = self.threads.get_mut(c) else { return false };
        if self.runqs[self.cpu].outranks(me.prio) {
            return false;
        }
        // The one `Null` handler; the caller is running (never `Free`), so its result is
        // written here, as `carry_out` would for `Next::Return`, without loading the
        // thread again.
        let r = Self::null(p, self.kernel_root, a::Null::from_regs(&me.regs.args()).mode);
        me.regs.set_result(r);
        true
    }

    /// The calls that only read or move their caller (no object or frame is made or
    /// freed, so no account is charged), handled; `None` for every other call.
    #[inline(always)]
    pub(crate) fn unmetered<P: Platform>(&mut self, p: &mut P, c: usize, s: Sysno) -> Option<Next> {
        let ti = self.threads[c].task as usize;
        // Only the registers a call reads are loaded (the rest of `args` is dropped).
        let r = &self.threads[c].regs.args();
        Some(match s {
            Sysno::Null => Next::Return(Self::null(p, self.kernel_root, a::Null::from_regs(r).mode)),
            Sysno::Yield => Next::Yield,
            Sysno::Trace => {
                let count = self.trace(p, ti, a::Trace::from_regs(r));
                self.give(c, count)
            }
            Sysno::ThisCpu => {
                let here = self.this_cpu();
                self.give(c, here)
            }
            Sysno::FrameStats => {
                let stats = self.frame_stats();
                self.give(c, stats)
            }
            Sysno::QuotaLeft => {
                let left = self.quota_left_of(ti);
                self.give(c, left)
            }
            // Wakes and waits, reads the ring's indices: makes and frees nothing.
            Sysno::RingEnter => {
                let a = a::RingEnter::from_regs(r);
                self.ring_enter(p, c, ti, a.ring, a.min, a.flags)
            }
            _ => return None,
        })
    }

    /// A metered call ended with `next`: what it changed is charged; if it failed for
    /// want of memory because a ceiling refused it, it failed with `Quota`.
    fn close_metered(&mut self, next: Next) -> Next {
        match (self.close_account(), next) {
            (true, Next::Return(Err(Error::OutOfMemory))) => Next::Return(Err(Error::Quota)),
            _ => next,
        }
    }

    /// What a handler decided for its caller `c`, done: the one place a system call's
    /// result is written and its caller leaves the CPU. (Inlined: a call here cost the
    /// null system call 16 ring-0 instructions.)
    #[inline(always)]
    pub(crate) fn carry_out(&mut self, c: usize, next: Next) {
        match next {
            Next::Return(r) => {
                let t = &mut self.threads[c];
                if t.state != ThreadState::Free {
                    t.regs.set_result(r);
                }
            }
            Next::Block(state) => self.stop_running(c, state),
            Next::Switch { to, caller } => {
                self.threads[c].state = caller;
                self.switch_to(to as usize);
            }
            Next::Yield => {
                self.threads[c].regs.set_result(Ok(()));
                self.preempt(c);
            }
            Next::Gone => {}
        }
    }

    /// A handler's named results (`l4_abi::args::ret`) written into its caller `c`'s
    /// registers, or its error: the one place a call's values reach the caller.
    #[inline(always)]
    pub(crate) fn give<R: Results>(&mut self, c: usize, r: Result<R, Error>) -> Next {
        match r {
            Ok(values) => {
                self.threads[c].regs.set_values(values);
                Next::Return(Ok(()))
            }
            Err(e) => Next::Return(Err(e)),
        }
    }

    /// One metered system call: its arguments decoded, its handler run. (Inlined into
    /// [`Kernel::metered`], its one caller: each handler's arguments are then read
    /// straight from the decoded registers instead of spilled to the stack and back.)
    #[inline(always)]
    fn dispatch<P: Platform>(&mut self, p: &mut P, c: usize, s: Sysno, r: &Regs) -> Next {
        let ti = self.threads[c].task as usize;
        let ret = Next::Return;
        match s {
            Sysno::DebugWrite => {
                let a = a::DebugWrite::from_regs(r);
                ret(self.debug_write(p, ti, a.ptr, a.len))
            }
            Sysno::TaskExit => {
                self.exit_task(p, ti, a::TaskExit::from_regs(r).code);
                Next::Gone
            }
            Sysno::ThreadExit => {
                self.thread_exit(p, c, a::ThreadExit::from_regs(r).code);
                Next::Gone
            }
            Sysno::ThreadCreate => {
                let a = a::ThreadCreate::from_regs(r);
                let made = self.thread_create(p, c, a.entry, a.stack, a.arg, a.cpu);
                self.give(c, made.map(|th| a::ret::ThreadCreate { ipc_buffer: crate::task::thread_ipc_buffer(th) }))
            }
            Sysno::RingCreate => {
                let a = a::RingCreate::from_regs(r);
                let made = self.ring_create(p, ti, a.entries, a.data_pages);
                self.give(c, made)
            }
            Sysno::SetAffinity => ret(self.set_affinity(ti, a::SetAffinity::from_regs(r))),
            Sysno::EndpointCreate => {
                let made = self.endpoint_create(ti);
                self.give(c, made)
            }
            Sysno::CapDerive => {
                let made = self.cap_derive(ti, a::CapDerive::from_regs(r));
                self.give(c, made)
            }
            Sysno::CapDelete => {
                ret(self.tasks[ti].caps.take(a::CapDelete::from_regs(r).slot).map(|cap| self.drop_cap(p, cap)))
            }
            Sysno::Send => {
                let a = a::Send::from_regs(r);
                self.ipc_send(p, c, a.endpoint, a.info, false)
            }
            Sysno::Call => {
                let a = a::Call::from_regs(r);
                self.ipc_send(p, c, a.endpoint, a.info, true)
            }
            Sysno::Recv => self.ipc_recv(p, c, a::Recv::from_regs(r).endpoint),
            Sysno::ReplyRecv => self.ipc_reply_recv(p, c, a::ReplyRecv::from_regs(r).endpoint),
            Sysno::Reply => ret(self.ipc_reply(p, c)),
            Sysno::NotifyCreate => {
                let made = self.notify_create(ti);
                self.give(c, made)
            }
            Sysno::Signal => {
                let a = a::Signal::from_regs(r);
                ret(self.signal(ti, a.notification, a.bits))
            }
            Sysno::SetRecvWindow => ret(self.set_recv_window(c, a::SetRecvWindow::from_regs(r))),
            Sysno::MemCreate => {
                let made = self.memobj_create(p, ti, a::MemCreate::from_regs(r).pages);
                self.give(c, made)
            }
            Sysno::MemMapObj => {
                let a = a::MemMapObj::from_regs(r);
                let mapped = self.memobj_map(p, ti, a.memory, a.va);
                self.give(c, mapped)
            }
            Sysno::SendNB => {
                let a = a::SendNB::from_regs(r);
                self.ipc_send_nb(p, c, a.endpoint, a.info)
            }
            Sysno::RecvNB => self.ipc_recv_nb(p, c, a::RecvNB::from_regs(r).endpoint),
            Sysno::Wait => self.wait(c, ti, a::Wait::from_regs(r).notification),
            Sysno::MemMap => {
                let a = a::MemMap::from_regs(r);
                ret(self.mem_map(p, ti, a.va, a.pages))
            }
            Sysno::MemUnmap => {
                let a = a::MemUnmap::from_regs(r);
                ret(self.mem_unmap(p, ti, a.va, a.pages))
            }
            Sysno::TaskSpawn => {
                let made = self.task_spawn(p, c, ti, a::TaskSpawn::from_regs(r));
                self.give(c, made)
            }
            Sysno::CapGrant => {
                let made = self.cap_grant(ti, a::CapGrant::from_regs(r));
                self.give(c, made)
            }
            Sysno::TaskKill => ret(self.task_kill(p, ti, a::TaskKill::from_regs(r))),
            Sysno::MachineExit => ret(self.machine_exit(p, ti, a::MachineExit::from_regs(r))),
            // Taken by `unmetered` before.
            Sysno::Null
            | Sysno::Yield
            | Sysno::ThisCpu
            | Sysno::Trace
            | Sysno::FrameStats
            | Sysno::QuotaLeft
            | Sysno::RingEnter => Next::Return(Err(Error::InvalidSyscall)),
        }
    }
}
