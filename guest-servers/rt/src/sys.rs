//! System calls: one `call` into the kernel entry page per call (see `l4_abi::syscall`).

use l4_abi::args::{self as a, Args, Regs, Results};
use l4_abi::quota::Quota;
use l4_abi::syscall::{Error, MsgInfo, Sysno, ENTRY_VA};

/// Registers after a system call.
#[derive(Clone, Copy, Debug, Default)]
pub struct Ret {
    pub rax: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub words: [u64; 8],
}

impl Ret {
    /// `Ok(self)` if `rax` is 0.
    pub fn ok(self) -> Result<Ret, Error> {
        match Error::from_u64(self.rax) {
            None if self.rax == 0 => Ok(self),
            Some(e) => Err(e),
            None => Err(Error::InvalidSyscall),
        }
    }
}

/// The raw call: `rax` = number, `rdi`, `rsi`, and eight words in rdx, r10, r8, r9, r12-r15.
#[inline(always)]
pub fn raw(n: Sysno, rdi: u64, rsi: u64, w: [u64; 8]) -> Ret {
    raw_number(n as u64, rdi, rsi, w)
}

/// [`raw`] with any number in `rax`, valid or not (for the fuzzer).
#[inline(always)]
pub fn raw_number(n: u64, rdi: u64, rsi: u64, w: [u64; 8]) -> Ret {
    let mut r = Ret::default();
    // SAFETY: the kernel entry page at ENTRY_VA is mapped in every address space and
    // follows this register contract; rcx and r11 are declared clobbered; the call pushes
    // a return address, so the asm is not `nostack`.
    unsafe {
        core::arch::asm!(
            "call rcx",
            inout("rax") n => r.rax,
            inout("rdi") rdi => r.rdi,
            inout("rsi") rsi => r.rsi,
            inout("rdx") w[0] => r.words[0],
            inout("r10") w[1] => r.words[1],
            inout("r8") w[2] => r.words[2],
            inout("r9") w[3] => r.words[3],
            inout("r12") w[4] => r.words[4],
            inout("r13") w[5] => r.words[5],
            inout("r14") w[6] => r.words[6],
            inout("r15") w[7] => r.words[7],
            inout("rcx") ENTRY_VA => _,
            out("r11") _,
        );
    }
    r
}

/// RFLAGS bits a ring-3 `popfq` can change (TF excepted: it would trap this thread on the
/// next instruction): CF, PF, AF, ZF, SF, DF, OF, NT, AC, ID. The rest are ignored in
/// ring 3 or fixed.
pub const USER_SETTABLE_RFLAGS: u64 = 0x1 | 0x4 | 0x10 | 0x40 | 0x80 | 0x400 | 0x800 | 0x4000 | 0x4_0000 | 0x20_0000;

/// [`raw_number`] entered with RFLAGS = `rflags | 0x202` (for the fuzzer: whatever a user
/// sets before a system call must not reach the kernel). The flags are reset to `0x202`
/// right after the call returns, so DF and AC never leak into the Rust code around it.
#[inline(always)]
pub fn raw_number_flags(n: u64, rdi: u64, rsi: u64, w: [u64; 8], rflags: u64) -> Ret {
    let mut r = Ret::default();
    // SAFETY: as in raw_number; the flags are set by popfq just before the call (popfq in
    // ring 3 cannot change IF, IOPL or VM) and put back to the ABI's state (DF clear)
    // right after it, before any compiler-generated code runs.
    unsafe {
        core::arch::asm!(
            "push r11",
            "popfq",
            "call rcx",
            "push 0x202",
            "popfq",
            inout("rax") n => r.rax,
            inout("rdi") rdi => r.rdi,
            inout("rsi") rsi => r.rsi,
            inout("rdx") w[0] => r.words[0],
            inout("r10") w[1] => r.words[1],
            inout("r8") w[2] => r.words[2],
            inout("r9") w[3] => r.words[3],
            inout("r12") w[4] => r.words[4],
            inout("r13") w[5] => r.words[5],
            inout("r14") w[6] => r.words[6],
            inout("r15") w[7] => r.words[7],
            inout("rcx") ENTRY_VA => _,
            inout("r11") (rflags & USER_SETTABLE_RFLAGS) | 0x202 => _,
        );
    }
    r
}

/// Makes the call whose arguments `a` holds, each in the register `l4_abi::args` gives
/// it (the same definition the kernel decodes with).
#[inline(always)]
pub fn call<A: Args>(a: A) -> Ret {
    let r = a.into_regs();
    raw(A::SYSNO, r.rdi, r.rsi, r.words)
}

/// [`call`]: its named results (`l4_abi::args::ret`) if it succeeded, else its error.
#[inline(always)]
pub fn call_ok<A: Args>(a: A) -> Result<A::Ret, Error> {
    let r = call(a).ok()?;
    Ok(A::Ret::from_regs(&Regs { rdi: r.rdi, rsi: r.rsi, words: r.words }))
}

/// Prints bytes on the console.
pub fn debug_write(bytes: &[u8]) -> Result<(), Error> {
    call_ok(a::DebugWrite { ptr: bytes.as_ptr() as u64, len: bytes.len() as u64 }).map(|_| ())
}

/// Ends this task.
pub fn task_exit(code: u64) -> ! {
    let _ = call(a::TaskExit { code });
    // The kernel never returns from TaskExit; if it somehow did, stop here for good.
    loop {
        core::hint::spin_loop();
    }
}

/// Gives up the rest of the time slice.
pub fn yield_now() {
    let _ = call(a::Yield {});
}

/// A new endpoint; returns its slot.
pub fn endpoint_create() -> Result<u8, Error> {
    call_ok(a::EndpointCreate {}).map(|r| r.slot as u8)
}

/// A copy of `slot` with at most `rights` and (if it has none) `badge`.
pub fn cap_derive(slot: u8, rights: u64, badge: u64) -> Result<u8, Error> {
    call_ok(a::CapDerive { slot: slot as u64, rights, badge }).map(|r| r.slot as u8)
}

pub fn cap_delete(slot: u8) -> Result<(), Error> {
    call_ok(a::CapDelete { slot: slot as u64 }).map(|_| ())
}

/// Maps `pages` zeroed pages at `va`.
pub fn mem_map(va: u64, pages: u64) -> Result<(), Error> {
    call_ok(a::MemMap { va, pages }).map(|_| ())
}

pub fn mem_unmap(va: u64, pages: u64) -> Result<(), Error> {
    call_ok(a::MemUnmap { va, pages }).map(|_| ())
}

/// Starts boot file `file` as a task at `prio`; faults go to `fault_ep`; `parent` lands in
/// the new task's slot 0. It draws on this task's quota. Returns the task capability's
/// slot.
pub fn task_spawn(file: u8, prio: u64, fault_ep: u8, parent: u8, args: [u64; 2]) -> Result<u8, Error> {
    spawn(file, prio, fault_ep, parent, args, 0)
}

/// [`task_spawn`], with a quota of its own for the new task, taken out of this task's
/// (`Error::Quota` if it does not fit): what it and everything it makes may hold.
pub fn task_spawn_with_quota(
    file: u8,
    prio: u64,
    fault_ep: u8,
    parent: u8,
    args: [u64; 2],
    quota: &Quota,
) -> Result<u8, Error> {
    spawn(file, prio, fault_ep, parent, args, quota as *const Quota as u64)
}

fn spawn(file: u8, prio: u64, fault_ep: u8, parent: u8, args: [u64; 2], quota: u64) -> Result<u8, Error> {
    let spawn = a::TaskSpawn {
        file: file as u64,
        prio,
        fault: fault_ep as u64,
        parent: parent as u64,
        arg0: args[0],
        arg1: args[1],
        quota,
    };
    call_ok(spawn).map(|r| r.task as u8)
}

/// What is left of the quota this task draws on (`u64::MAX`: no limit).
pub fn quota_left() -> Quota {
    call_ok(a::QuotaLeft {}).map_or(Quota::default(), |r| Quota {
        frames: r.frames,
        tasks: r.tasks,
        threads: r.threads,
        endpoints: r.endpoints,
        notifications: r.notifications,
        memobjs: r.memobjs,
        rings: r.rings,
    })
}

/// A new thread in this task on `cpu`: `entry(arg, its IPC buffer address)` on the stack
/// below `stack_top` (16-byte aligned). Returns the thread's IPC buffer address.
pub fn thread_create(entry: extern "C" fn(u64, u64) -> !, stack_top: u64, arg: u64, cpu: u64) -> Result<u64, Error> {
    call_ok(a::ThreadCreate { entry: entry as usize as u64, stack: stack_top, arg, cpu }).map(|r| r.ipc_buffer)
}

/// Ends the calling thread (the task, with `code`, if it is the last one).
pub fn thread_exit(code: u64) -> ! {
    let _ = call(a::ThreadExit { code });
    // The kernel never returns from ThreadExit.
    loop {
        core::hint::spin_loop();
    }
}

/// The null system call: enters the kernel and returns; with `switch_spaces`, the kernel
/// also loads another address space and this one again on the way (the floor of an IPC
/// round trip between two address spaces).
pub fn null(switch_spaces: bool) -> Result<(), Error> {
    call_ok(a::Null { mode: switch_spaces as u64 }).map(|_| ())
}

/// Copies my capability `slot` into `task`; returns its slot there.
pub fn cap_grant(task: u8, slot: u8) -> Result<u8, Error> {
    call_ok(a::CapGrant { task: task as u64, slot: slot as u64 }).map(|r| r.slot as u8)
}

/// The CPU this thread runs on, and how many CPUs are online.
pub fn this_cpu() -> (u64, u64) {
    call_ok(a::ThisCpu {}).map_or((0, 1), |r| (r.cpu, r.cpus))
}

/// (free frames, used frames).
pub fn frame_stats() -> (u64, u64) {
    call_ok(a::FrameStats {}).map_or((0, 0), |r| (r.free, r.used))
}

pub fn task_kill(task: u8) -> Result<(), Error> {
    call_ok(a::TaskKill { task: task as u64 }).map(|_| ())
}

/// Ends the virtual machine (needs the machine capability).
pub fn machine_exit(machine: u8, code: u8) -> Result<(), Error> {
    call_ok(a::MachineExit { machine: machine as u64, code: code as u64 }).map(|_| ())
}

/// The `MsgInfo` of an IPC result.
pub fn info(r: &Ret) -> MsgInfo {
    MsgInfo(r.rsi)
}

/// A new notification; returns its slot.
pub fn notify_create() -> Result<u8, Error> {
    call_ok(a::NotifyCreate {}).map(|r| r.slot as u8)
}

/// Sets `bits` in a notification.
pub fn signal(n: u8, bits: u64) -> Result<(), Error> {
    call_ok(a::Signal { notification: n as u64, bits }).map(|_| ())
}

/// Waits for bits in a notification; returns (and clears) them.
pub fn wait(n: u8) -> Result<u64, Error> {
    call_ok(a::Wait { notification: n as u64 }).map(|r| r.bits)
}

/// Opens this CPU's ring-0 instruction-count window, with `machine` (a machine
/// capability with TRACE, see [`crate::names::trace`]). Retries while the kernel says a
/// timer tick is pending (it is delivered as the call returns); `false` if it cannot open.
pub fn count_start(machine: u8) -> bool {
    for _ in 0..100 {
        match call_ok(a::Trace { machine: machine as u64, op: 0 }) {
            Ok(_) => return true,
            Err(Error::WouldBlock) => continue,
            Err(_) => return false,
        }
    }
    false
}

/// Closes the window and returns its count (`None`: this VMM cannot count, or the
/// kernel's watchdog ended the window before it was closed).
pub fn count_stop(machine: u8) -> Option<u64> {
    let _ = call(a::Trace { machine: machine as u64, op: 1 });
    let n = call_ok(a::Trace { machine: machine as u64, op: 2 }).map_or(0, |r| r.count);
    // All-ones: not available; zero: no counting device at all (e.g. QEMU).
    (n != u64::from(u32::MAX) && n != 0).then_some(n)
}

/// This CPU's count window: 0 closed, 1 open, 2 ended by the kernel's watchdog.
pub fn count_window(machine: u8) -> Result<u64, Error> {
    call_ok(a::Trace { machine: machine as u64, op: 3 }).map(|r| r.count)
}

/// Where pages sent to this thread land: `pages` pages at `va` (`(0, 0)`: none).
pub fn set_recv_window(va: u64, pages: u64) -> Result<(), Error> {
    call_ok(a::SetRecvWindow { va, pages }).map(|_| ())
}

/// A new memory object of `pages` zeroed pages; returns its slot.
pub fn mem_create(pages: u64) -> Result<u8, Error> {
    call_ok(a::MemCreate { pages }).map(|r| r.slot as u8)
}

/// Maps the memory object in `slot` at `va`; returns its size in pages.
pub fn mem_map_obj(slot: u8, va: u64) -> Result<u64, Error> {
    call_ok(a::MemMapObj { memory: slot as u64, va }).map(|r| r.pages)
}

/// Runs the task in `task` on CPU `cpu` from now on.
pub fn set_affinity(task: u8, cpu: u64) -> Result<(), Error> {
    call_ok(a::SetAffinity { task: task as u64, cpu }).map(|_| ())
}
