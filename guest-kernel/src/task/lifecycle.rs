//! Threads beside a task's first one: `ThreadCreate` and `ThreadExit`.
//!
//! Invariants: a thread made here shares its task's address space, capability table,
//! priority and fault endpoint (whose reference count it holds, like every thread); its
//! IPC buffer is a zeroed frame the kernel maps at `thread_ipc_buffer(slot)`, above what
//! a task may map or unmap itself, so the frame lives exactly as long as the thread (it
//! is unmapped when the thread ends, or with the address space when the task does). A
//! task whose last thread ends is ended with that thread's code, as by `TaskExit`.

use l4_abi::layout::thread_ipc_buffer;
use l4_abi::layout::{USER_MAP_MAX, USER_MIN};
use l4_abi::syscall::Error;

use crate::cap::{Cap, Object};
use crate::kernel::Kernel;
use crate::mm::vspace::{self, WRITABLE};
use crate::platform::Platform;
use crate::quota::Res;
use crate::task::thread::ThreadState;

impl Kernel {
    /// `ThreadCreate(entry, stack_top, arg, cpu)` from thread `c`: returns the new
    /// thread's slot.
    pub(crate) fn thread_create<P: Platform>(
        &mut self,
        p: &mut P,
        c: usize,
        entry: u64,
        stack_top: u64,
        arg: u64,
        cpu: u64,
    ) -> Result<usize, Error> {
        let user = USER_MIN..=USER_MAP_MAX;
        if !user.contains(&entry)
            || !user.contains(&stack_top)
            || !stack_top.is_multiple_of(16)
            || stack_top < USER_MIN + 8
        {
            return Err(Error::BadAddress);
        }
        let cpu = usize::try_from(cpu).map_err(|_| Error::BadArgument)?;
        if cpu >= self.cpus {
            return Err(Error::BadArgument);
        }
        let th = self.threads.iter().position(|t| t.state == ThreadState::Free).ok_or(Error::NoSlots)?;
        let creator = self.threads[c];
        let buf = thread_ipc_buffer(th);
        self.take(Res::Threads)?;
        self.map_zeroed(p, creator.root, buf, 1, WRITABLE).inspect_err(|_| self.put(Res::Threads))?;
        if let Some((ep, _)) = creator.fault_ep {
            self.add_ref(Cap::new(Object::Endpoint(ep), 0));
        }
        let t = self.fresh_thread(
            p,
            th,
            (creator.task, creator.root),
            (creator.prio, cpu as u8),
            (entry, stack_top - 8),
            buf,
        );
        t.fault_ep = creator.fault_ep;
        t.regs.set_first_args(arg, buf);
        self.make_ready(th);
        Ok(th)
    }

    /// `ThreadExit(code)` from thread `c`.
    pub(crate) fn thread_exit<P: Platform>(&mut self, p: &mut P, c: usize, code: u64) {
        let ti = self.threads[c].task as usize;
        let others = (0..self.threads.len())
            .any(|t| t != c && self.threads[t].state != ThreadState::Free && self.threads[t].task as usize == ti);
        if !others {
            self.exit_task(p, ti, code);
            return;
        }
        let root = self.threads[c].root;
        let buf = thread_ipc_buffer(c);
        if vspace::translate(p, root, buf).is_some_and(|(pa, _)| pa & !0xfff == self.threads[c].ipc_buffer) {
            vspace::unmap(p, &mut self.frames, root, buf);
            p.flush_tlb(root, buf);
        }
        self.retire_thread(p, c);
    }
}
