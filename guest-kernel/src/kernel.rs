//! The kernel's state, [`Kernel`]: the tables of every kind of object (each kind defined
//! in the module of its concept: [`Task`], [`Thread`], [`Endpoint`], [`Notification`],
//! [`MemObj`], [`Ring`], [`BootFile`]), how a task is spawned and killed, faults, the
//! scheduler, the accounts' charging, and the handlers of the calls that have no other
//! home. The operations on IPC, memory objects, rings and threads are `impl Kernel`
//! blocks in `ipc/`, `mm/share.rs`, `ring/enter.rs` and `task/lifecycle.rs`, above this
//! module; `syscall.rs` decodes and dispatches every call. Portable: the platform supplies
//! memory, console and machine exit; the arch layer saves user registers into
//! [`Thread::regs`] before calling in and restores the registers of
//! [`Kernel::current`] afterwards.
//!
//! Invariants:
//! - exactly one thread is `Running` (the current one) or none (idle);
//! - a `Ready` thread is in the run queue, no other thread is;
//! - a thread blocked on an endpoint is in that endpoint's queue, and only there;
//! - every capability names a live object; an endpoint lives while a capability names it;
//! - every frame a task uses is freed when the task ends (frame accounting returns to its
//!   value before the task was spawned);
//! - every live task draws on the account of a live task (itself or an ancestor) or, only
//!   for tasks the host tests make, on none; the accounts, less what they lent, add up to
//!   what is live (`crate::quota`);
//! - nothing a user passes can make the kernel panic: every argument is checked and every
//!   failure is an [`Error`] in the caller's `rax`.

use l4_abi::args::{self, ret};
use l4_abi::bootinfo;
use l4_abi::layout::{BOOTINFO_VA, IPC_BUFFER_VA, STACK_SIZE, STACK_TOP, USER_MAP_MAX, USER_MIN};
use l4_abi::syscall::{rights, Error, ENTRY_VA};

use crate::boot::{BootFile, MAX_BOOT_FILES};
use crate::cap::{Cap, Kind, Object, NONE};
use crate::elf;
use crate::ipc::{Endpoint, Notification, Waiting};
use crate::machine::{self, UserRegs};
use crate::mm::frames::{Frames, Range};
use crate::mm::memobj::MemObj;
use crate::mm::umem::USlice;
use crate::mm::vspace::{self, MapError, OWNED, WRITABLE};
use crate::mm::PAGE_SIZE;
use crate::platform::Platform;
use crate::quota::{Account, Counts, Meter, Res, RESOURCES};
use crate::ring::Ring;
use crate::task::sched::{Link, RunQueue, PRIOS};
use crate::task::thread::{Thread, ThreadState};
use crate::task::Task;
use core::mem::size_of;

/// How many objects of each kind the kernel's tables hold. They are sized from the
/// guest's usable memory at boot, in steps of [`Capacity::STEP`] rounded up (so the
/// default 256 MiB guest, a few MiB of which hold the kernel and its modules, gets the
/// 256 MiB tables), and cost about 1% of it. Object numbers are u16 (`NONE` is u16::MAX),
/// so no table grows past [`Capacity::MOST`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capacity {
    pub tasks: usize,
    pub threads: usize,
    pub endpoints: usize,
    pub notifications: usize,
    pub memobjs: usize,
    pub rings: usize,
}

impl Capacity {
    /// The memory each step of tables is sized for.
    pub const STEP: u64 = 64 << 20;
    /// What each step of memory adds.
    pub const PER_STEP: Capacity =
        Capacity { tasks: 64, threads: 256, endpoints: 1024, notifications: 256, memobjs: 256, rings: 64 };
    /// The largest table.
    pub const MOST: usize = 0xff00;

    /// The tables for `bytes` of usable memory.
    pub fn for_memory(bytes: u64) -> Capacity {
        let steps = bytes.div_ceil(Self::STEP).max(1) as usize;
        let n = |per: usize| per.saturating_mul(steps).min(Self::MOST);
        let p = Self::PER_STEP;
        Capacity {
            tasks: n(p.tasks),
            threads: n(p.threads),
            endpoints: n(p.endpoints),
            notifications: n(p.notifications),
            memobjs: n(p.memobjs),
            rings: n(p.rings),
        }
    }

    /// The bytes the tables take (each rounded up to whole frames), with one run-queue
    /// link table per CPU.
    pub fn bytes(&self) -> u64 {
        let frames = |n: usize, size: usize| ((n * size) as u64).div_ceil(PAGE_SIZE) * PAGE_SIZE;
        frames(self.tasks, size_of::<Task>())
            + frames(self.threads, size_of::<Thread>())
            + frames(self.endpoints, size_of::<Endpoint>())
            + frames(self.notifications, size_of::<Notification>())
            + frames(self.memobjs, size_of::<MemObj>())
            + frames(self.rings, size_of::<Ring>())
            + MAX_CPUS as u64 * frames(self.threads, size_of::<Link>())
    }
}
/// The most CPUs the kernel schedules on.
pub const MAX_CPUS: usize = 16;
/// Timer ticks per time slice.
pub const SLICE_TICKS: u32 = 2;

/// The whole kernel state.
pub struct Kernel {
    pub frames: Frames,
    /// The object tables, made by `init` from the guest's memory ([`Capacity`]); empty
    /// before.
    pub tasks: &'static mut [Task],
    pub threads: &'static mut [Thread],
    pub endpoints: &'static mut [Endpoint],
    pub notifications: &'static mut [Notification],
    pub memobjs: &'static mut [MemObj],
    pub rings: &'static mut [Ring],
    pub boot_files: [BootFile; MAX_BOOT_FILES],
    pub nboot_files: usize,
    /// One run queue per CPU, each with a link per thread.
    pub runqs: [RunQueue; MAX_CPUS],
    /// The CPU executing kernel code now (set by the arch layer on entry, under the lock).
    pub cpu: usize,
    /// CPUs that are online.
    pub cpus: usize,
    /// The running thread of the executing CPU (`NONE` when idle); the others' are in
    /// `currents`, swapped in and out by `enter_cpu`/`leave_cpu`.
    pub current: u16,
    pub currents: [u16; MAX_CPUS],
    /// CPUs that must be interrupted (a thread became ready there); the arch layer sends
    /// the IPIs and clears this.
    pub wake: u64,
    pub kernel_root: u64,
    /// The frame holding the user entry stub, mapped at `ENTRY_VA` everywhere.
    pub entry_frame: u64,
    slice_left: [u32; MAX_CPUS],
    pub(crate) next_thread_id: u64,
    /// Set once a MachineExit was requested.
    pub exit_code: Option<u8>,
    /// What is live, and the ceilings of the running system call (see `crate::quota`).
    pub meter: Meter,
    /// The account the running system call is charged to (`NONE`: none is open).
    pub payer: u16,
}

/// Writes `parts` to the console.
pub(crate) fn say<P: Platform>(p: &mut P, parts: &[&[u8]]) {
    for part in parts {
        p.console(part);
    }
}

fn map_error(e: MapError) -> Error {
    match e {
        MapError::BadAddress => Error::BadAddress,
        MapError::Exists => Error::Exists,
        MapError::OutOfMemory => Error::OutOfMemory,
    }
}

pub(crate) fn num(n: u64, buf: &mut [u8; 20]) -> &[u8] {
    crate::fmt::dec(n, buf).as_bytes()
}

impl Kernel {
    pub const fn new() -> Self {
        Kernel {
            frames: Frames::empty(),
            tasks: &mut [],
            threads: &mut [],
            endpoints: &mut [],
            notifications: &mut [],
            memobjs: &mut [],
            rings: &mut [],
            boot_files: [BootFile { pa: 0, size: 0, name: [0; bootinfo::NAME_BYTES] }; MAX_BOOT_FILES],
            nboot_files: 0,
            runqs: [const { RunQueue::empty() }; MAX_CPUS],
            cpu: 0,
            cpus: 1,
            current: NONE,
            currents: [NONE; MAX_CPUS],
            wake: 0,
            kernel_root: 0,
            entry_frame: 0,
            slice_left: [SLICE_TICKS; MAX_CPUS],
            next_thread_id: 1,
            exit_code: None,
            meter: Meter::new(),
            payer: NONE,
        }
    }

    /// Takes the usable memory, the kernel's page-table root and the user entry stub, and
    /// makes the object tables, as large as [`Capacity::for_memory`] says, from it.
    pub fn init<P: Platform>(
        &mut self,
        p: &mut P,
        usable: &[Range],
        kernel_root: u64,
        entry_code: &[u8],
    ) -> Result<(), Error> {
        self.frames.reset(usable);
        if !self.frames.init_refcounts() {
            return Err(Error::OutOfMemory);
        }
        let c = Capacity::for_memory(self.frames.total() * PAGE_SIZE);
        let frames = &mut self.frames;
        let mut take =
            |bytes: usize| frames.take_contiguous((bytes as u64).div_ceil(PAGE_SIZE)).ok_or(Error::OutOfMemory);
        self.tasks = p.table(take(c.tasks * size_of::<Task>())?, c.tasks, Task::DEAD);
        self.threads = p.table(take(c.threads * size_of::<Thread>())?, c.threads, Thread::FREE);
        self.endpoints = p.table(take(c.endpoints * size_of::<Endpoint>())?, c.endpoints, Endpoint::FREE);
        self.notifications =
            p.table(take(c.notifications * size_of::<Notification>())?, c.notifications, Notification::FREE);
        self.memobjs = p.table(take(c.memobjs * size_of::<MemObj>())?, c.memobjs, MemObj::FREE);
        self.rings = p.table(take(c.rings * size_of::<Ring>())?, c.rings, Ring::FREE);
        for q in self.runqs.iter_mut() {
            *q = RunQueue::new(p.table(take(c.threads * size_of::<Link>())?, c.threads, Link::OUT));
        }
        self.kernel_root = kernel_root;
        let f = self.frames.alloc(p).ok_or(Error::OutOfMemory)?;
        p.write_bytes(f, entry_code);
        self.entry_frame = f;
        Ok(())
    }

    /// Registers a boot file (part of a module).
    pub fn add_boot_file(&mut self, pa: u64, size: u64, name: &[u8]) -> bool {
        if self.nboot_files == MAX_BOOT_FILES {
            return false;
        }
        let mut n = [0u8; bootinfo::NAME_BYTES];
        let len = name.len().min(n.len() - 1);
        n[..len].copy_from_slice(&name[..len]);
        self.boot_files[self.nboot_files] = BootFile { pa, size, name: n };
        self.nboot_files += 1;
        true
    }

    /// The running thread, if any.
    pub fn current(&self) -> Option<usize> {
        (self.current != NONE).then_some(self.current as usize)
    }

    // ---- accounts (see crate::quota) -----------------------------------------------------

    /// What is left of account `a` (`u64::MAX` each for `NONE`: no limit).
    fn account_left(&self, a: u16) -> Counts {
        match a {
            NONE => [u64::MAX; RESOURCES],
            a => self.tasks[a as usize].acct.left(),
        }
    }

    /// What is left of the account task `ti` draws on.
    pub(crate) fn quota_left(&self, ti: usize) -> Counts {
        self.account_left(self.tasks[ti].account)
    }

    /// What is live: frames in use and objects of each kind.
    pub fn live(&self) -> Counts {
        let m = &self.meter;
        [
            self.frames.used(),
            m.live(Res::Tasks),
            m.live(Res::Threads),
            m.live(Res::Endpoints),
            m.live(Res::Notifications),
            m.live(Res::Memobjs),
            m.live(Res::Rings),
        ]
    }

    /// A system call of task `ti` starts: what it makes and frees is charged to the
    /// account `ti` draws on, and what it makes may not pass what is left of it.
    #[inline(always)]
    pub(crate) fn open_account(&mut self, ti: usize) {
        self.payer = self.tasks[ti].account;
        self.reopen();
    }

    /// The frame ceiling of what is left of the payer's account; the objects' ceilings
    /// are taken when the call first makes or frees one (`take`, `put`).
    #[inline(always)]
    fn reopen(&mut self) {
        let used = self.frames.used();
        let ceiling = match self.payer {
            NONE => u64::MAX,
            a => used.saturating_add(self.tasks[a as usize].acct.left_of(Res::Frames)),
        };
        self.frames.set_ceiling(ceiling);
        self.meter.open(used);
    }

    /// One more object of kind `r`, charged to the running call's payer: `Quota` if its
    /// account has none left.
    pub(crate) fn take(&mut self, r: Res) -> Result<(), Error> {
        if !self.meter.begun() {
            let left = self.account_left(self.payer);
            self.meter.begin(&left);
        }
        self.meter.take(r)
    }

    /// One object of kind `r` fewer, credited to the running call's payer.
    pub(crate) fn put(&mut self, r: Res) {
        if !self.meter.begun() {
            let left = self.account_left(self.payer);
            self.meter.begin(&left);
        }
        self.meter.put(r)
    }

    /// Charges the payer with what changed since the meter was opened or flushed.
    #[inline(never)]
    fn flush_payer(&mut self) {
        let d = self.meter.flush(self.frames.used());
        if self.payer != NONE {
            self.tasks[self.payer as usize].acct.charge(&d);
        }
    }

    /// The system call ends: what it changed is charged, the ceiling lifts. Returns
    /// whether a ceiling refused something during it.
    #[inline(always)]
    pub(crate) fn close_account(&mut self) -> bool {
        self.frames.set_ceiling(u64::MAX);
        if self.meter.changed(self.frames.used()) {
            self.flush_payer();
        }
        self.payer = NONE;
        self.meter.take_refused() | self.frames.take_refused()
    }

    /// `n` frames can be had: `OutOfMemory` if the machine has fewer free, `Quota` if
    /// the payer's account has fewer left.
    pub(crate) fn room_for(&self, n: u64) -> Result<(), Error> {
        if self.frames.free() < n {
            Err(Error::OutOfMemory)
        } else if self.frames.room() < n {
            Err(Error::Quota)
        } else {
            Ok(())
        }
    }

    /// Task `ti`, which has an account of its own, is dying: the account goes back to
    /// the one it was lent out of, and whatever drew on it draws on that one now.
    fn retire_account(&mut self, ti: usize) {
        // What the running call did so far goes to its payer (perhaps this account).
        self.flush_payer();
        let (gone, lender) = (self.tasks[ti].acct, self.tasks[ti].lender);
        if lender != NONE {
            self.tasks[lender as usize].acct.settle(&gone);
        }
        for (i, t) in self.tasks.iter_mut().enumerate() {
            if i == ti || !t.alive {
                continue;
            }
            if t.account == ti as u16 {
                t.account = lender;
            }
            if t.lender == ti as u16 {
                t.lender = lender;
            }
        }
        if self.payer == ti as u16 {
            self.payer = lender;
        }
        self.reopen();
    }

    // ---- scheduling -------------------------------------------------------------------

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
                let (cpu, prio) = (t.cpu as usize, t.prio as usize);
                if cpu == self.cpu && self.runqs[self.cpu].top_priority().is_none_or(|p| p <= prio) {
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

    // ---- tasks ------------------------------------------------------------------------

    fn free_task_slot(&self) -> Result<usize, Error> {
        self.tasks.iter().position(|t| !t.alive).ok_or(Error::NoSlots)
    }

    fn free_thread_slot(&self) -> Result<usize, Error> {
        self.threads.iter().position(|t| t.state == ThreadState::Free).ok_or(Error::NoSlots)
    }

    /// Maps `pages` zeroed, owned, user pages at `va` in `root`; undoes them all on failure.
    pub(crate) fn map_zeroed<P: Platform>(
        &mut self,
        p: &mut P,
        root: u64,
        va: u64,
        pages: u64,
        flags: u64,
    ) -> Result<(), Error> {
        for i in 0..pages {
            let r = match self.frames.alloc(p) {
                Some(f) => vspace::map(p, &mut self.frames, root, va + i * PAGE_SIZE, f, flags | OWNED).map_err(|e| {
                    self.frames.free_frame(p, f);
                    e
                }),
                None => Err(MapError::OutOfMemory),
            };
            if let Err(e) = r {
                for j in 0..i {
                    vspace::unmap(p, &mut self.frames, root, va + j * PAGE_SIZE);
                    p.flush_tlb(root, va + j * PAGE_SIZE);
                }
                return Err(map_error(e));
            }
        }
        Ok(())
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
    fn spawn_in<P: Platform>(
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
    fn load_image<P: Platform>(&mut self, p: &mut P, root: u64, bf: &BootFile) -> Result<u64, Error> {
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

    /// Forgets one capability: an endpoint with no capability left dies, and whoever
    /// waits on it is woken with `PartnerGone`.
    pub(crate) fn drop_cap<P: Platform>(&mut self, p: &mut P, c: Cap) {
        if let Object::Ring(r) = c.object {
            self.drop_ring(p, r as usize, c.rights);
        }
        if let Object::Memory(m) = c.object {
            let m = m as usize;
            self.memobjs[m].refs = self.memobjs[m].refs.saturating_sub(1);
            if self.memobjs[m].refs == 0 {
                self.destroy_memobj(p, m);
            }
        }
        if let Object::Notification(n) = c.object {
            let n = n as usize;
            if self.notifications[n].refs == 1 {
                self.put(Res::Notifications);
            }
            self.notifications[n].refs = self.notifications[n].refs.saturating_sub(1);
            if self.notifications[n].refs == 0 {
                let w = self.notifications[n].waiter;
                if w != NONE {
                    self.threads[w as usize].regs.set_result(Err(Error::PartnerGone));
                    self.make_ready(w as usize);
                }
                self.notifications[n] = Notification::FREE;
            }
        }
        if let Object::Endpoint(e) = c.object {
            let e = e as usize;
            if self.endpoints[e].refs == 1 {
                self.put(Res::Endpoints);
            }
            self.endpoints[e].refs = self.endpoints[e].refs.saturating_sub(1);
            if self.endpoints[e].refs == 0 {
                self.fail_waiters(e);
            }
        }
    }

    /// Wakes every thread queued on endpoint `e` with `PartnerGone` (a queued fault
    /// message's thread just stays faulted).
    fn fail_waiters(&mut self, e: usize) {
        while let Some(t) = self.ep_pop(e) {
            self.threads[t].regs.set_result(Err(Error::PartnerGone));
            if self.threads[t].fault.is_some() {
                self.threads[t].state = ThreadState::Faulted;
            } else {
                self.make_ready(t);
            }
        }
    }

    /// Counts a new capability to an object.
    pub(crate) fn add_ref(&mut self, c: Cap) {
        match c.object {
            Object::Endpoint(e) => self.endpoints[e as usize].refs += 1,
            Object::Notification(n) => self.notifications[n as usize].refs += 1,
            Object::Memory(m) => self.memobjs[m as usize].refs += 1,
            Object::Ring(r) => {
                self.rings[r as usize].refs += 1;
                if c.rights & rights::SEND != 0 {
                    self.rings[r as usize].send_refs += 1;
                }
                if c.rights & rights::RECV != 0 {
                    self.rings[r as usize].recv_refs += 1;
                }
            }
            _ => {}
        }
    }

    // ---- faults -----------------------------------------------------------------------

    /// The current thread faulted (`vector`, error code, faulting address). It stops for
    /// good; its fault handler gets a message (label `FAULT_LABEL`).
    pub fn fault<P: Platform>(&mut self, p: &mut P, vector: u64, error: u64, addr: u64) {
        let Some(c) = self.current() else { return };
        let ti = self.threads[c].task as usize;
        // A write to a copy-on-write page is not a fault: give the writer its own copy,
        // paid for by the account it draws on (none left: the write faults).
        if machine::is_user_write_to_present_page(vector, error) {
            self.open_account(ti);
            let copied = self.resolve_cow(p, self.threads[c].root, addr);
            let _ = self.close_account();
            if copied {
                return;
            }
        }
        let rip = self.threads[c].regs.pc();
        let (mut b0, mut b1, mut b2, mut h) = ([0u8; 20], [0u8; 20], [0u8; 20], [0u8; 16]);
        say(
            p,
            &[
                b"l4: task ",
                num(ti as u64, &mut b0),
                b" '",
                self.tasks[ti].name(),
                b"' thread ",
                num(c as u64, &mut b1),
                b" faulted: vector ",
                num(vector, &mut b2),
                b" at rip 0x",
                crate::fmt::hex(rip, 0, &mut h).as_bytes(),
                b"\n",
            ],
        );
        self.threads[c].fault = Some([vector, error, rip, addr, ti as u64]);
        self.stop_running(c, ThreadState::Faulted);
        if let Some((ep, badge)) = self.threads[c].fault_ep {
            self.threads[c].send_badge = badge;
            self.send_fault(p, c, ep as usize);
        }
        self.reschedule();
    }

    // ---- system calls -----------------------------------------------------------------

    // ---- system-call handlers (syscall.rs decodes their arguments) ----------------------

    /// `Null(mode)`: mode 1 also goes through another address space and back.
    pub(crate) fn null<P: Platform>(&mut self, p: &mut P, mode: u64) -> Result<(), Error> {
        match mode {
            0 => Ok(()),
            1 => {
                p.bounce_root(self.kernel_root);
                Ok(())
            }
            _ => Err(Error::BadArgument),
        }
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

    pub(crate) fn endpoint_create(&mut self, ti: usize) -> Result<ret::EndpointCreate, Error> {
        let e = self.endpoints.iter().position(|e| e.refs == 0).ok_or(Error::NoSlots)?;
        self.take(Res::Endpoints)?;
        let slot = self.tasks[ti].caps.insert(Cap::new(Object::Endpoint(e as u16), rights::ALL)).inspect_err(|_| {
            self.put(Res::Endpoints);
        })?;
        self.endpoints[e] = Endpoint { refs: 1, owner: ti as u16, ..Endpoint::FREE };
        Ok(ret::EndpointCreate { slot: slot as u64 })
    }

    pub(crate) fn cap_derive(&mut self, ti: usize, a: args::CapDerive) -> Result<ret::CapDerive, Error> {
        let slot = self.tasks[ti].caps.derive(a.slot, a.rights, a.badge)?;
        let cap = self.tasks[ti].caps.to_copy(slot as u64)?;
        self.add_ref(cap);
        Ok(ret::CapDerive { slot: slot as u64 })
    }

    pub(crate) fn set_recv_window(&mut self, c: usize, a: args::SetRecvWindow) -> Result<(), Error> {
        if a.va != 0 || a.pages != 0 {
            Self::check_user_pages(a.va, a.pages)?;
        }
        self.threads[c].win_va = a.va;
        self.threads[c].win_pages = a.pages;
        Ok(())
    }

    pub(crate) fn trace<P: Platform>(&mut self, p: &mut P, op: u64) -> Result<ret::Trace, Error> {
        if op > 2 {
            return Err(Error::BadArgument);
        }
        Ok(ret::Trace { count: p.trace(op) })
    }

    pub(crate) fn cap_grant(&mut self, ti: usize, a: args::CapGrant) -> Result<ret::CapGrant, Error> {
        let (target, _) = self.tasks[ti].caps.lookup(a.task, Kind::Task, rights::GRANT)?;
        let give = self.tasks[ti].caps.to_copy(a.slot)?;
        let slot = self.tasks[target as usize].caps.insert(give)?;
        self.add_ref(give);
        Ok(ret::CapGrant { slot: slot as u64 })
    }

    pub(crate) fn this_cpu(&self) -> Result<ret::ThisCpu, Error> {
        Ok(ret::ThisCpu { cpu: self.cpu as u64, cpus: self.cpus as u64 })
    }

    pub(crate) fn frame_stats(&self) -> Result<ret::FrameStats, Error> {
        Ok(ret::FrameStats { free: self.frames.free(), used: self.frames.used() })
    }

    pub(crate) fn quota_left_of(&self, ti: usize) -> Result<ret::QuotaLeft, Error> {
        let [frames, tasks, threads, endpoints, notifications, memobjs, rings] = self.quota_left(ti);
        Ok(ret::QuotaLeft { frames, tasks, threads, endpoints, notifications, memobjs, rings })
    }

    pub(crate) fn task_kill<P: Platform>(&mut self, p: &mut P, ti: usize, a: args::TaskKill) -> Result<(), Error> {
        let (target, _) = self.tasks[ti].caps.lookup(a.task, Kind::Task, rights::CONTROL)?;
        if target as usize == ti {
            return Err(Error::BadArgument);
        }
        self.kill_task(p, target as usize);
        Ok(())
    }

    pub(crate) fn machine_exit<P: Platform>(
        &mut self,
        p: &mut P,
        ti: usize,
        a: args::MachineExit,
    ) -> Result<(), Error> {
        self.tasks[ti].caps.lookup(a.machine, Kind::Machine, rights::CONTROL)?;
        let code = u8::try_from(a.code).map_err(|_| Error::BadArgument)?;
        self.exit_code = Some(code);
        p.machine_exit(code);
        Ok(())
    }

    pub(crate) fn debug_write<P: Platform>(&mut self, p: &mut P, ti: usize, va: u64, len: u64) -> Result<(), Error> {
        if len > 4096 {
            return Err(Error::BadArgument);
        }
        let root = self.tasks[ti].root;
        let mut buf = [0u8; 256];
        let mut done = 0;
        // Check the whole range first so output is all or nothing.
        USlice::new(root, va, len).map_err(|_| Error::BadAddress)?;
        while done < len {
            let k = (len - done).min(buf.len() as u64);
            let s = USlice::new(root, va + done, k).map_err(|_| Error::BadAddress)?;
            s.read(p, &mut buf[..k as usize]).map_err(|_| Error::BadAddress)?;
            p.console(&buf[..k as usize]);
            done += k;
        }
        Ok(())
    }

    pub(crate) fn check_user_pages(va: u64, pages: u64) -> Result<(), Error> {
        let len = pages.checked_mul(PAGE_SIZE).ok_or(Error::BadArgument)?;
        let end = va.checked_add(len).ok_or(Error::BadAddress)?;
        if va % PAGE_SIZE != 0 || va < USER_MIN || end > USER_MAP_MAX || pages == 0 || pages > 65536 {
            return Err(Error::BadAddress);
        }
        Ok(())
    }

    pub(crate) fn mem_map<P: Platform>(&mut self, p: &mut P, ti: usize, va: u64, pages: u64) -> Result<(), Error> {
        Self::check_user_pages(va, pages)?;
        self.room_for(pages)?;
        let root = self.tasks[ti].root;
        self.map_zeroed(p, root, va, pages, WRITABLE)
    }

    pub(crate) fn mem_unmap<P: Platform>(&mut self, p: &mut P, ti: usize, va: u64, pages: u64) -> Result<(), Error> {
        Self::check_user_pages(va, pages)?;
        let root = self.tasks[ti].root;
        let end = va + pages * PAGE_SIZE;
        let mut at = va;
        while at < end {
            // Skip what no page table covers (cost per existing table, not per page).
            let next = vspace::next_candidate(p, root, at);
            if next != at {
                at = next;
                continue;
            }
            if vspace::unmap(p, &mut self.frames, root, at) != 0 {
                p.flush_tlb(root, at);
            }
            at += PAGE_SIZE;
        }
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
    fn read_quota<P: Platform>(&self, p: &P, ti: usize, va: u64) -> Result<Counts, Error> {
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
    fn spawn_with_quota<P: Platform>(
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

impl Default for Kernel {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
#[path = "kernel_tests.rs"]
mod tests;
