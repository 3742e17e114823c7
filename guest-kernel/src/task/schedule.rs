//! Which thread runs: making threads ready, taking the running one off its CPU, the time
//! slice, picking the next thread, and `SetAffinity`. The run queues themselves are
//! [`super::sched`]'s; this is what the kernel does with them.
//!
//! Invariants: exactly one thread per CPU is `Running` (that CPU's current one) or none
//! (the CPU idles); a `Ready` thread is in its CPU's run queue and no other thread is;
//! `current` changes only here, in `retire_thread` and in the fast path, which makes its
//! partner current itself to stay straight-line.

use l4_abi::args;
use l4_abi::syscall::{rights, Error};

use crate::cap::{Kind, NONE};
use crate::kernel::{Kernel, SLICE_TICKS};
use crate::task::thread::ThreadState;

impl Kernel {
    /// The executing CPU starts kernel work: its current thread becomes `current`.
    pub fn enter_cpu(&mut self, cpu: usize) {
        self.cpu = cpu;
        self.current = self.currents[cpu];
    }

    /// The executing CPU leaves the kernel: `current` goes back to its slot.
    pub fn leave_cpu(&mut self) {
        self.currents[self.cpu] = self.current;
    }

    /// Makes `t` ready to run on its CPU; another CPU gets woken up.
    pub(crate) fn make_ready(&mut self, t: usize) {
        self.threads[t].state = ThreadState::Ready;
        let cpu = self.threads[t].cpu as usize;
        self.runqs[cpu].push(t, self.threads[t].prio as usize);
        if cpu != self.cpu {
            self.wake |= 1 << cpu;
        }
    }

    /// The current thread `c` stops running and waits in `state` (already queued where
    /// it waits, if anywhere).
    pub(crate) fn stop_running(&mut self, c: usize, state: ThreadState) {
        self.threads[c].state = state;
        if self.current == c as u16 {
            self.current = NONE;
        }
    }

    /// The current thread `c` goes back to its run queue, behind its equals.
    pub(crate) fn preempt(&mut self, c: usize) {
        self.make_ready(c);
        self.current = NONE;
    }

    /// Runs `t` next on this CPU, without a scheduler pass (L4 direct switch). The caller
    /// has already taken the current thread out of `Running`. A thread that lives on
    /// another CPU is made ready there instead.
    pub(crate) fn switch_to(&mut self, t: usize) {
        if self.threads[t].cpu as usize != self.cpu {
            self.make_ready(t);
            self.current = NONE;
            return;
        }
        self.runqs[self.cpu].remove(t, self.threads[t].prio as usize);
        self.threads[t].state = ThreadState::Running;
        self.current = t as u16;
    }

    /// After a system call or interrupt: keep the current thread unless it blocked or a
    /// higher-priority thread is ready; otherwise run the best ready thread.
    pub fn reschedule(&mut self) {
        if let Some(c) = self.current() {
            let t = &self.threads[c];
            if t.state == ThreadState::Running {
                if t.cpu as usize == self.cpu && !self.runqs[self.cpu].outranks(t.prio) {
                    return;
                }
                // Preempted, or moved to another CPU.
                self.make_ready(c);
            }
        }
        self.current = NONE;
        if let Some(t) = self.runqs[self.cpu].pop() {
            self.threads[t].state = ThreadState::Running;
            self.current = t as u16;
            self.slice_left[self.cpu] = SLICE_TICKS;
        }
    }

    /// A timer tick: round-robin among equal priorities when the slice is used up.
    pub fn tick(&mut self) {
        let Some(c) = self.current() else {
            self.reschedule();
            return;
        };
        let cpu = self.cpu;
        self.slice_left[cpu] = self.slice_left[cpu].saturating_sub(1);
        if self.slice_left[cpu] == 0 {
            self.slice_left[cpu] = SLICE_TICKS;
            if self.runqs[cpu].top_priority().is_some_and(|p| p >= self.threads[c].prio as usize) {
                self.preempt(c);
            }
        }
        self.reschedule();
    }

    /// Whether any thread could ever run again (false: every thread waits on IPC that
    /// nobody can send, since there are no other event sources yet).
    pub fn anything_runnable(&self) -> bool {
        self.current != NONE
            || (0..self.cpus)
                .any(|c| (c != self.cpu && self.currents[c] != NONE) || self.runqs[c].top_priority().is_some())
    }

    pub(crate) fn set_affinity(&mut self, ti: usize, a: args::SetAffinity) -> Result<(), Error> {
        let (target, _) = self.tasks[ti].caps.lookup(a.task, Kind::Task, rights::CONTROL)?;
        let cpu = usize::try_from(a.cpu).map_err(|_| Error::BadArgument)?;
        if cpu >= self.cpus {
            return Err(Error::BadArgument);
        }
        for th in 0..self.threads.len() {
            if self.threads[th].state == ThreadState::Free || self.threads[th].task != target {
                continue;
            }
            let old = self.threads[th].cpu as usize;
            self.threads[th].cpu = cpu as u8;
            if self.threads[th].state == ThreadState::Ready {
                self.runqs[old].remove(th, self.threads[th].prio as usize);
                self.make_ready(th);
            }
        }
        Ok(())
    }
}
