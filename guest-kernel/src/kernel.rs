//! The kernel's state, [`Kernel`]: the tables of every kind of object (each kind defined
//! in the module of its concept: [`Task`], [`Thread`], [`Endpoint`], [`Notification`],
//! [`MemObj`], [`Ring`], [`BootFile`]), their sizing and making at boot, the accounts'
//! charging, faults, and the handlers of the calls that have no other home (`Null`,
//! `Trace`, `ThisCpu`, `FrameStats`, `QuotaLeft`, `MachineExit`, `DebugWrite`). The
//! operations on the objects are `impl Kernel` blocks in their concepts' folders, above
//! this module: `task/lifecycle.rs` (spawn, kill, threads), `task/schedule.rs`,
//! `cap/calls.rs` (object lifetime), `ipc/`, `mm/share.rs`, `mm/map.rs`, `ring/enter.rs`;
//! `syscall.rs` decodes and dispatches every call. Portable: the platform supplies
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
use l4_abi::syscall::{rights, Error};

use crate::boot::{BootFile, MAX_BOOT_FILES};
use crate::cap::{Kind, NONE};
use crate::ipc::{Endpoint, Notification};
use crate::machine;
use crate::mm::frames::{Frames, Range};
use crate::mm::memobj::MemObj;
use crate::mm::umem::USlice;
use crate::mm::vspace::MapError;
use crate::mm::PAGE_SIZE;
use crate::platform::Platform;
use crate::quota::{Counts, Meter, Res, RESOURCES};
use crate::ring::Ring;
use crate::task::sched::{Link, RunQueue};
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
    pub(crate) slice_left: [u32; MAX_CPUS],
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

pub(crate) fn map_error(e: MapError) -> Error {
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
    pub(crate) fn reopen(&mut self) {
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
    pub(crate) fn flush_payer(&mut self) {
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
    pub(crate) fn retire_account(&mut self, ti: usize) {
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

    // ---- system-call handlers (syscall.rs decodes their arguments) ----------------------

    /// `Null(mode)`: mode 1 also goes through another address space (`kernel_root`, the
    /// kernel's own) and back. Needs nothing else of the kernel, so that the fast path
    /// can call it while it holds its caller's thread.
    pub(crate) fn null<P: Platform>(p: &mut P, kernel_root: u64, mode: u64) -> Result<(), Error> {
        match mode {
            0 => Ok(()),
            1 => {
                p.bounce_root(kernel_root);
                Ok(())
            }
            _ => Err(Error::BadArgument),
        }
    }

    /// `Trace(machine, op)`: this CPU's instruction-count window (see `Platform::trace`);
    /// `WouldBlock` if it cannot open now. A machine capability with TRACE: the window
    /// stops the periodic tick on this CPU (for at most the platform's watchdog period).
    /// Out of line: the system-call front it is called from stays as small as before.
    #[inline(never)]
    pub(crate) fn trace<P: Platform>(&mut self, p: &mut P, ti: usize, a: args::Trace) -> Result<ret::Trace, Error> {
        self.tasks[ti].caps.lookup(a.machine, Kind::Machine, rights::TRACE)?;
        if a.op > 3 {
            return Err(Error::BadArgument);
        }
        Ok(ret::Trace { count: p.trace(a.op).ok_or(Error::WouldBlock)? })
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
}

impl Default for Kernel {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
#[path = "kernel_tests.rs"]
mod tests;
