//! How tasks and threads begin and end: the root task and `TaskSpawn` (an address space,
//! an image loaded from a boot file, a first thread, a quota), `ThreadCreate` and
//! `ThreadExit`, `TaskExit` and `TaskKill`, and what a dying task leaves behind (its
//! capabilities dropped, its threads taken out of every queue, its account settled).
//!
//! Invariants: a failed spawn leaves nothing behind (no slot, frame or reference taken);
//! a killed task's frames all come back, and no thread of it stays queued anywhere. A
//! thread made by `ThreadCreate` shares its task's address space, capability table,
//! priority and fault endpoint (whose reference count it holds, like every thread); its
//! IPC buffer is a zeroed frame the kernel maps at `thread_ipc_buffer(slot)`, above what
//! a task may map or unmap itself, so the frame lives exactly as long as the thread (it
//! is unmapped when the thread ends, or with the address space when the task does). A
//! task whose last thread ends is ended with that thread's code, as by `TaskExit`.

use l4_abi::args::{self, ret};
use l4_abi::bootinfo;
use l4_abi::layout::{thread_ipc_buffer, BOOTINFO_VA, IPC_BUFFER_VA, STACK_SIZE, STACK_TOP, USER_MAP_MAX, USER_MIN};
use l4_abi::syscall::{rights, Error, ENTRY_VA};

use crate::boot::BootFile;
use crate::cap::{Cap, Kind, Object, NONE};
use crate::elf;
use crate::ipc::Waiting;
use crate::kernel::{map_error, num, say, Kernel};
use crate::machine::UserRegs;
use crate::mm::umem::USlice;
use crate::mm::vspace::{self, OWNED, WRITABLE};
use crate::mm::PAGE_SIZE;
use crate::platform::Platform;
use crate::quota::{Account, Counts, Res, RESOURCES};
use crate::task::sched::PRIOS;
use crate::task::thread::{Thread, ThreadState};
use crate::task::Task;

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

    pub(crate) fn free_task_slot(&self) -> Result<usize, Error> {
        self.tasks.iter().position(|t| !t.alive).ok_or(Error::NoSlots)
    }

    pub(crate) fn free_thread_slot(&self) -> Result<usize, Error> {
        self.threads.iter().position(|t| t.state == ThreadState::Free).ok_or(Error::NoSlots)
    }

    /// Creates a task from boot file `file`, with one thread at `prio`, ready to run;
    /// it draws on no account until its spawner gives it one. Returns (task, thread). On
    /// failure everything allocated is released.
    pub fn spawn<P: Platform>(&mut self, p: &mut P, file: usize, prio: usize) -> Result<(usize, usize), Error> {
        let bf = *self.boot_files[..self.nboot_files].get(file).ok_or(Error::BadArgument)?;
        if prio >= PRIOS {
            return Err(Error::BadArgument);
        }
        let ti = self.free_task_slot()?;
        let th = self.free_thread_slot()?;
        self.take(Res::Tasks)?;
        if let Err(e) = self.take(Res::Threads) {
            self.put(Res::Tasks);
            return Err(e);
        }
        let made = self.spawn_in(p, &bf, (ti, th), prio);
        if made.is_err() {
            self.put(Res::Tasks);
            self.put(Res::Threads);
        }
        made
    }

    /// `spawn`'s work, in slots `ti` and `th`.
    pub(crate) fn spawn_in<P: Platform>(
        &mut self,
        p: &mut P,
        bf: &BootFile,
        (ti, th): (usize, usize),
        prio: usize,
    ) -> Result<(usize, usize), Error> {
        let root = vspace::new_root(p, &mut self.frames, self.kernel_root).ok_or(Error::OutOfMemory)?;
        self.tasks[ti] = Task { alive: true, root, ..Task::DEAD };
        let nlen = bf.name.iter().position(|&b| b == 0).unwrap_or(32).min(31);
        self.tasks[ti].name[..nlen].copy_from_slice(&bf.name[..nlen]);
        let r = self.load_image(p, root, bf).and_then(|e| {
            self.map_zeroed(p, root, IPC_BUFFER_VA, 1, WRITABLE)?;
            Ok(e)
        });
        let entry = match r {
            Ok(e) => e,
            Err(e) => {
                vspace::destroy(p, &mut self.frames, root);
                self.tasks[ti] = Task::DEAD;
                return Err(e);
            }
        };
        let cpu = self.cpu as u8;
        // As if `_start` had been called: rsp = 8 mod 16 at its first instruction.
        self.fresh_thread(p, th, (ti as u16, root), (prio as u8, cpu), (entry, STACK_TOP - 8), IPC_BUFFER_VA);
        self.make_ready(th);
        Ok((ti, th))
    }

    /// Fills slot `th` with a new user thread of `task` (index, page-table root) at
    /// (priority, CPU), starting at `start` (rip, rsp) with interrupts on, whose IPC buffer is the
    /// page mapped at `buffer_va`. Returns it for the caller's remaining registers.
    pub(crate) fn fresh_thread<P: Platform>(
        &mut self,
        p: &P,
        th: usize,
        task: (u16, u64),
        (prio, cpu): (u8, u8),
        start: (u64, u64),
        buffer_va: u64,
    ) -> &mut Thread {
        let id = self.next_thread_id;
        self.next_thread_id += 1;
        let t = &mut self.threads[th];
        *t = Thread::FREE;
        (t.task, t.root, t.prio, t.cpu, t.id) = (task.0, task.1, prio, cpu, id);
        t.regs = UserRegs::at_entry(start.0, start.1);
        t.ipc_buffer = vspace::translate(p, task.1, buffer_va).map_or(0, |(pa, _)| pa);
        t
    }

    /// Maps the ELF segments, the stack and the entry page into `root`.
    pub(crate) fn load_image<P: Platform>(&mut self, p: &mut P, root: u64, bf: &BootFile) -> Result<u64, Error> {
        let bytes = p.phys_slice(bf.pa, bf.size).ok_or(Error::BadElf)?;
        let img = elf::Image::parse(bytes).map_err(|_| Error::BadElf)?;
        let entry = img.entry;
        // Collect the segments first: the image borrows the platform.
        let mut segs = [(0u64, 0u64, 0u64, 0u64, false); 8];
        let mut n = 0;
        for s in img.segments() {
            let s = s.map_err(|_| Error::BadElf)?;
            if n == segs.len() {
                return Err(Error::BadElf);
            }
            let file_pa = bf.pa + (s.data.as_ptr() as u64 - bytes.as_ptr() as u64);
            segs[n] = (s.vaddr, s.memsz, file_pa, s.data.len() as u64, s.writable);
            n += 1;
        }
        for &(vaddr, memsz, file_pa, filesz, writable) in &segs[..n] {
            let start = vaddr & !(PAGE_SIZE - 1);
            let end = (vaddr + memsz).div_ceil(PAGE_SIZE) * PAGE_SIZE;
            let mut page = start;
            while page < end {
                // Segments may share a page (not on our linker scripts, but allowed).
                let existing = vspace::translate(p, root, page);
                let frame = match existing {
                    Some((pa, _)) => pa & !(PAGE_SIZE - 1),
                    None => {
                        let f = self.frames.alloc(p).ok_or(Error::OutOfMemory)?;
                        let flags = OWNED | if writable { WRITABLE } else { 0 };
                        if let Err(e) = vspace::map(p, &mut self.frames, root, page, f, flags) {
                            self.frames.free_frame(p, f);
                            return Err(map_error(e));
                        }
                        f
                    }
                };
                // Copy the file bytes that fall in this page.
                let lo = page.max(vaddr);
                let hi = (page + PAGE_SIZE).min(vaddr + filesz);
                if lo < hi {
                    let mut buf = [0u8; 512];
                    let mut at = lo;
                    while at < hi {
                        let k = ((hi - at) as usize).min(buf.len());
                        p.read_bytes(file_pa + (at - vaddr), &mut buf[..k]);
                        p.write_bytes(frame + (at - page), &buf[..k]);
                        at += k as u64;
                    }
                }
                page += PAGE_SIZE;
            }
        }
        self.map_zeroed(p, root, STACK_TOP - STACK_SIZE, STACK_SIZE / PAGE_SIZE, WRITABLE)?;
        vspace::map(p, &mut self.frames, root, ENTRY_VA, self.entry_frame, 0).map_err(map_error)?;
        Ok(entry)
    }

    /// Starts the root task from boot file 0: machine capability, every boot file, and
    /// the boot-info page.
    pub fn spawn_root<P: Platform>(&mut self, p: &mut P, prio: usize, cmdline: &[u8]) -> Result<usize, Error> {
        let (ti, th) = self.spawn(p, 0, prio)?;
        let caps = &mut self.tasks[ti].caps;
        caps.set(bootinfo::MACHINE_SLOT, Cap::new(Object::Machine, rights::ALL))?;
        let task_slot = caps.insert(Cap::new(Object::Task(ti as u16), rights::ALL))?;
        let info = self.frames.alloc(p).ok_or(Error::OutOfMemory)?;
        let mut words = [0u64; 4];
        words[0] = bootinfo::MAGIC;
        words[1] = self.nboot_files.min(bootinfo::MAX_FILES) as u64;
        words[2] = bootinfo::MACHINE_SLOT as u64;
        words[3] = task_slot as u64;
        for (i, w) in words.iter().enumerate() {
            p.write_u64(info + i as u64 * 8, *w);
        }
        for i in 0..self.nboot_files.min(bootinfo::MAX_FILES) {
            let slot = bootinfo::FIRST_FILE_SLOT + i as u8;
            self.tasks[ti].caps.set(slot, Cap::new(Object::BootFile(i as u16), rights::SEND))?;
            let at = info + (4 + i * bootinfo::FILE_WORDS) as u64 * 8;
            p.write_u64(at, slot as u64);
            p.write_u64(at + 8, self.boot_files[i].size);
            let name = self.boot_files[i].name;
            p.write_bytes(at + 16, &name);
        }
        let cl = &cmdline[..cmdline.len().min(bootinfo::CMDLINE_MAX)];
        p.write_u64(info + bootinfo::CMDLINE_LEN_OFFSET as u64, cl.len() as u64);
        p.write_bytes(info + bootinfo::CMDLINE_OFFSET as u64, cl);
        let root = self.tasks[ti].root;
        vspace::map(p, &mut self.frames, root, BOOTINFO_VA, info, OWNED).map_err(map_error)?;
        let _ = th;
        // The root task's account is the machine: every frame and table slot, of which
        // it holds what is used now.
        let limit = [
            self.frames.total(),
            self.tasks.len() as u64,
            self.threads.len() as u64,
            self.endpoints.len() as u64,
            self.notifications.len() as u64,
            self.memobjs.len() as u64,
            self.rings.len() as u64,
        ];
        let used = self.live();
        let t = &mut self.tasks[ti];
        (t.account, t.acct, t.lender) = (ti as u16, Account::new(limit, used), NONE);
        Ok(ti)
    }

    /// Ends task `ti`: its threads leave every queue, its partners are told, its
    /// capabilities are dropped (endpoints with no capability left die), its memory is
    /// freed.
    pub fn kill_task<P: Platform>(&mut self, p: &mut P, ti: usize) {
        if !self.tasks.get(ti).is_some_and(|t| t.alive) {
            return;
        }
        // First every other CPU leaves the address space (and so the task's threads,
        // which it may be running): only then are their TCBs freed, so no CPU can still
        // be writing an entry frame into a TCB that is reused.
        let root = self.tasks[ti].root;
        p.retire_root(root);
        for th in 0..self.threads.len() {
            if self.threads[th].state == ThreadState::Free || self.threads[th].task as usize != ti {
                continue;
            }
            self.retire_thread(p, th);
        }
        // Its endpoints close: whoever waits on them (callers queued at a crashed
        // server) gets PartnerGone now, later sends and receives get it at once.
        for e in 0..self.endpoints.len() {
            if self.endpoints[e].refs > 0 && self.endpoints[e].owner == ti as u16 {
                self.fail_waiters(e);
                self.endpoints[e].waiting = Waiting::Closed;
                self.endpoints[e].owner = NONE;
            }
        }
        let caps = self.tasks[ti].caps;
        for (_, c) in caps.iter() {
            self.drop_cap(p, c);
        }
        for t in self.tasks.iter_mut().filter(|t| t.alive) {
            t.caps.revoke(Object::Task(ti as u16));
        }
        vspace::destroy(p, &mut self.frames, root);
        self.put(Res::Tasks);
        if self.tasks[ti].account == ti as u16 {
            self.retire_account(ti);
        }
        self.tasks[ti] = Task::DEAD;
    }

    /// Ends task `ti` on its own request, saying so on the console.
    pub(crate) fn exit_task<P: Platform>(&mut self, p: &mut P, ti: usize, code: u64) {
        let (mut b0, mut b1) = ([0u8; 20], [0u8; 20]);
        let name = self.tasks[ti].name;
        let n = name.iter().position(|&b| b == 0).unwrap_or(name.len());
        say(
            p,
            &[
                b"l4: task ",
                num(ti as u64, &mut b0),
                b" '",
                &name[..n],
                b"' exited with code ",
                num(code, &mut b1),
                b"\n",
            ],
        );
        self.kill_task(p, ti);
    }

    /// Ends thread `th`: out of every queue and relation, its fault endpoint's reference
    /// dropped, its slot free. (Its memory belongs to its task.)
    pub(crate) fn retire_thread<P: Platform>(&mut self, p: &mut P, th: usize) {
        self.detach_thread(th);
        if let Some((ep, _)) = self.threads[th].fault_ep {
            self.drop_cap(p, Cap::new(Object::Endpoint(ep), 0));
        }
        if self.threads[th].state != ThreadState::Free {
            self.put(Res::Threads);
        }
        self.threads[th] = Thread::FREE;
        if self.current == th as u16 {
            self.current = NONE;
        }
        // Running on another CPU: that CPU notices at its next entry (its current thread
        // is gone) and is interrupted now so that it enters soon.
        for c in 0..self.cpus {
            if c != self.cpu && self.currents[c] == th as u16 {
                self.currents[c] = NONE;
                self.wake |= 1 << c;
            }
        }
    }

    /// Takes thread `th` out of every queue and relation before it goes away.
    pub(crate) fn detach_thread(&mut self, th: usize) {
        let prio = self.threads[th].prio as usize;
        match self.threads[th].state {
            ThreadState::Ready => self.runqs[self.threads[th].cpu as usize].remove(th, prio),
            ThreadState::BlockedSend { ep, .. } | ThreadState::BlockedRecv { ep } => self.ep_remove(ep as usize, th),
            ThreadState::BlockedWait { n } => self.notifications[n as usize].waiter = NONE,
            ThreadState::BlockedRing { r } => self.rings[r as usize].forget(th as u16),
            _ => {}
        }
        for other in 0..self.threads.len() {
            if other == th {
                continue;
            }
            // Clients waiting for this thread's reply: the call fails.
            if self.threads[other].state == (ThreadState::BlockedReply { server: th as u16 }) {
                self.threads[other].regs.set_result(Err(Error::PartnerGone));
                self.make_ready(other);
            }
            // Servers that owe this thread a reply: the reply will fail.
            if self.threads[other].reply_to == th as u16 {
                self.threads[other].reply_to = NONE;
            }
        }
    }

    pub(crate) fn task_kill<P: Platform>(&mut self, p: &mut P, ti: usize, a: args::TaskKill) -> Result<(), Error> {
        let (target, _) = self.tasks[ti].caps.lookup(a.task, Kind::Task, rights::CONTROL)?;
        if target as usize == ti {
            return Err(Error::BadArgument);
        }
        self.kill_task(p, target as usize);
        Ok(())
    }

    pub(crate) fn task_spawn<P: Platform>(
        &mut self,
        p: &mut P,
        c: usize,
        ti: usize,
        a: args::TaskSpawn,
    ) -> Result<ret::TaskSpawn, Error> {
        // The quota first: a bad pointer is refused whatever the capabilities are.
        let quota = match a.quota {
            0 => None,
            va => Some(self.read_quota(p, ti, va)?),
        };
        let (f, _) = self.tasks[ti].caps.lookup(a.file, Kind::BootFile, rights::SEND)?;
        let (fault_ep, fault_cap) = self.tasks[ti].caps.lookup(a.fault, Kind::Endpoint, rights::SEND)?;
        let parent = self.tasks[ti].caps.to_copy(a.parent)?;
        let prio = usize::try_from(a.prio).map_err(|_| Error::BadArgument)?;
        if prio > self.threads[c].prio as usize {
            return Err(Error::BadArgument); // no priority above the spawner's
        }
        // Where the new task's capability goes, found before anything is created.
        let slot = self.tasks[ti].caps.free_slot()?;
        let (nt, nth) = match quota {
            None => {
                let made = self.spawn(p, f as usize, prio)?;
                self.tasks[made.0].account = self.payer;
                made
            }
            Some(q) => self.spawn_with_quota(p, f as usize, prio, q)?,
        };
        self.threads[nth].regs.set_first_args(a.arg0, a.arg1);
        self.threads[nth].fault_ep = Some((fault_ep, fault_cap.badge));
        // The thread's fault endpoint stays alive as long as the thread: count it.
        self.endpoints[fault_ep as usize].refs += 1;
        // Neither can fail (a fresh table, a free slot); if one did, the task goes whole.
        let placed = self.tasks[nt].caps.set(bootinfo::PARENT_SLOT, parent).and_then(|()| {
            self.add_ref(parent);
            self.tasks[ti].caps.set(slot, Cap::new(Object::Task(nt as u16), rights::ALL))
        });
        if let Err(e) = placed {
            self.kill_task(p, nt);
            return Err(e);
        }
        Ok(ret::TaskSpawn { task: slot as u64 })
    }

    /// The quota at user address `va` of task `ti`.
    pub(crate) fn read_quota<P: Platform>(&self, p: &P, ti: usize, va: u64) -> Result<Counts, Error> {
        let mut b = [0u8; RESOURCES * 8];
        let s = USlice::new(self.tasks[ti].root, va, b.len() as u64).map_err(|_| Error::BadAddress)?;
        s.read(p, &mut b).map_err(|_| Error::BadAddress)?;
        Ok(core::array::from_fn(|i| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[i * 8..i * 8 + 8]);
            u64::from_le_bytes(w)
        }))
    }

    /// `spawn`, with an account of its own for the new task: `q` is lent out of the
    /// payer's (the caller's) account, and what making the task takes (itself, its first
    /// thread, its image, stack and page tables) is charged to the new account, within
    /// `q`. On failure the loan is returned and nothing is left.
    pub(crate) fn spawn_with_quota<P: Platform>(
        &mut self,
        p: &mut P,
        file: usize,
        prio: usize,
        q: Counts,
    ) -> Result<(usize, usize), Error> {
        let lender = self.payer;
        if lender != NONE {
            self.tasks[lender as usize].acct.lend(&q)?;
        }
        // The meter moves to the new account (which has no slot yet) for the spawn...
        self.flush_payer();
        self.frames.set_ceiling(self.frames.used().saturating_add(q[Res::Frames as usize]));
        self.meter.begin(&q);
        let made = self.spawn(p, file, prio);
        let d = self.meter.flush(self.frames.used());
        // ... and back.
        self.reopen();
        match made {
            Ok((nt, nth)) => {
                let t = &mut self.tasks[nt];
                (t.account, t.lender) = (nt as u16, lender);
                t.acct = Account { limit: q, used: d };
                Ok((nt, nth))
            }
            Err(e) => {
                if lender != NONE {
                    let a = &mut self.tasks[lender as usize].acct;
                    a.repay(&q);
                    a.charge(&d);
                }
                Err(e)
            }
        }
    }
}
