//! What happens between entering and leaving the kernel: dispatch of every trap, the
//! choice of the user entry mechanism at boot, and the loop that runs the next thread or
//! idles.
//!
//! Invariants: the kernel state is only touched from here, with interrupts off (the one
//! exception, the idle loop's `hlt`, holds no reference to it while waiting); a user fault
//! never stops the kernel; a kernel fault prints its state and ends the VM with
//! `KERNEL_FAULT`.

use core::ptr::addr_of_mut;

use l4_abi::exit;
use l4_abi::syscall::ENTRY_VA;
use l4_kernel::kernel::{Kernel, UserRegs};
use l4_kernel::mm::vspace;

use super::entry::{self, IPI_VECTOR, SPURIOUS_VECTOR, SYSCALL_VECTOR, TIMER_VECTOR};
use super::gdt::MAX_CPUS;
use super::platform::Machine;
use super::{apic, cpu, percpu, smp};
use crate::console::Hex;
use crate::kprintln;

static mut KERNEL: Kernel = Kernel::new();
static mut MACHINE: Machine = Machine { vmm_zero: false };

/// How user code enters the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryMode {
    /// Not decided yet: the probe thread is running.
    Probing,
    Syscall,
    Int3,
}

static mut ENTRY_MODE: EntryMode = EntryMode::Probing;
/// Per CPU, the thread whose x87/SSE state is in that CPU: (slot, thread id); id 0 is
/// nobody.
static mut FPU_OWNER: [(usize, u64); MAX_CPUS] = [(0, 0); MAX_CPUS];
/// The probe address space, while it exists.
static mut PROBE_ROOT: u64 = 0;
/// What to do once the entry mechanism is known.
static mut AFTER_PROBE: Option<fn()> = None;

/// The kernel state and the platform.
///
/// # Safety
/// Call only from trap context or boot, with interrupts off, and do not keep the
/// references across `cpu::idle_wait` (the only point where a trap can nest).
pub unsafe fn state() -> (&'static mut Kernel, &'static mut Machine) {
    // SAFETY: single CPU, interrupts off: no two live references exist (see above).
    unsafe { (&mut *addr_of_mut!(KERNEL), &mut *addr_of_mut!(MACHINE)) }
}

/// The chosen entry mechanism.
pub fn entry_mode() -> EntryMode {
    // SAFETY: written once by the probe, read afterwards.
    unsafe { ENTRY_MODE }
}

/// The entry page's code for `mode`: `syscall; ret` or `int3; ret`.
fn entry_code(mode: EntryMode) -> &'static [u8] {
    match mode {
        EntryMode::Syscall => &[0x0f, 0x05, 0xc3],
        _ => &[0xcc, 0xc3],
    }
}

/// Sets up `syscall` (EFER.SCE, STAR, LSTAR, FMASK) so that the probe can try it.
pub fn setup_syscall_msrs() {
    cpu::wrmsr(cpu::IA32_EFER, cpu::rdmsr(cpu::IA32_EFER) | 1);
    // STAR: kernel CS 0x08 (SS 0x10); sysret base 0x10 (user SS 0x1b, CS 0x23).
    cpu::wrmsr(cpu::IA32_STAR, (0x10u64 << 48) | (0x08u64 << 32));
    cpu::wrmsr(cpu::IA32_LSTAR, entry::syscall_entry_addr());
    // Clear IF, DF, TF and AC on entry.
    cpu::wrmsr(cpu::IA32_FMASK, 0x4_0700);
}

/// Chooses the user entry mechanism, then calls `then` (in trap context).
///
/// `forced`: from the command line (`entry=syscall|int3`). Otherwise a probe thread in
/// ring 3 executes `syscall`: if that lands in the kernel's `syscall` entry, `syscall`
/// works; if it faults instead (on PVM hosts `syscall` jumps to LSTAR still in ring 3 and
/// takes a page fault there; elsewhere it may raise #UD), user code enters with `int3`.
/// The decision rests on what the CPU did, not on what the VMM says.
pub fn choose_entry(forced: Option<EntryMode>, then: fn()) -> ! {
    setup_syscall_msrs();
    // SAFETY: boot, interrupts off.
    let (k, m) = unsafe { state() };
    if let Some(mode) = forced {
        // One CPU so far: no lock (start_aps takes it before a second CPU runs).
        k.enter_cpu(0);
        finish_probe(mode, then);
    }
    // A one-page address space: `syscall; ud2` at 0x10000.
    let root = vspace::new_root(m, &mut k.frames, k.kernel_root).expect("frames for the entry probe");
    let code = k.frames.alloc(m).expect("frames for the entry probe");
    l4_kernel::mm::PhysMem::write_bytes(m, code, &[0x0f, 0x05, 0x0f, 0x0b]);
    vspace::map(m, &mut k.frames, root, 0x10000, code, vspace::OWNED).expect("probe mapping");
    // SAFETY: boot, single CPU.
    unsafe {
        PROBE_ROOT = root;
        AFTER_PROBE = Some(then);
    }
    let frame = UserRegs { rip: 0x10000, cs: 0x23, ss: 0x1b, rflags: 0x2, rsp: 0, ..UserRegs::default() };
    static mut PROBE_FRAME: UserRegs = UserRegs::ZERO;
    // SAFETY: the probe frame is a static; the probe address space maps the kernel half.
    unsafe {
        let pf = addr_of_mut!(PROBE_FRAME);
        *pf = frame;
        entry::set_frame_top(0, pf as u64 + core::mem::size_of::<UserRegs>() as u64);
        cpu::set_cr3(root);
        entry::return_to_user(pf)
    }
}

fn finish_probe(mode: EntryMode, then: fn()) -> ! {
    // SAFETY: trap context or boot, interrupts off.
    let (k, m) = unsafe { state() };
    // SAFETY: as above; single CPU.
    unsafe {
        ENTRY_MODE = mode;
        if PROBE_ROOT != 0 {
            cpu::set_cr3(k.kernel_root);
            vspace::destroy(m, &mut k.frames, PROBE_ROOT);
            PROBE_ROOT = 0;
        }
    }
    l4_kernel::mm::PhysMem::write_bytes(m, k.entry_frame, entry_code(mode));
    kprintln!(
        "l4: user entry: ",
        if mode == EntryMode::Syscall { "syscall" } else { "int3 (syscall does not enter ring 0 here)" }
    );
    then();
    run()
}

/// Every entry from user mode (the frame is the current thread's `regs`). The IPC fast
/// path is tried first and leaves straight to the partner thread; everything else goes
/// through [`trap_slow`].
#[no_mangle]
extern "C" fn trap_from_user(frame: *mut UserRegs) -> ! {
    // SAFETY: trap context, interrupts off; the big kernel lock is taken right below
    // before anything is touched (with one CPU there is nobody to contend with).
    let (k, _) = unsafe { state() };
    if smp::active() {
        let me = percpu::this_cpu();
        smp::answer_shootdown(me);
        smp::lock(me);
        k.enter_cpu(me);
    }
    // SAFETY: the entry stub passes the frame it just filled (a TCB's regs or the probe's).
    let (vector, rip) = unsafe { ((*frame).vector, (*frame).rip) };
    let is_syscall =
        vector == SYSCALL_VECTOR || (vector == 3 && rip == ENTRY_VA + 1 && entry_mode() == EntryMode::Int3);
    if is_syscall {
        if k.fastpath() {
            enter_user(k, k.current as usize);
        }
    }
    trap_slow(frame, is_syscall)
}

#[inline(never)]
fn trap_slow(frame: *mut UserRegs, is_syscall: bool) -> ! {
    // SAFETY: trap context, interrupts off.
    let (k, m) = unsafe { state() };
    // SAFETY: as in trap_from_user.
    let f = unsafe { *frame };
    if entry_mode() == EntryMode::Probing {
        // SAFETY: set before the probe ran.
        let then = unsafe { AFTER_PROBE.expect("probe continuation") };
        let mode = if f.vector == SYSCALL_VECTOR { EntryMode::Syscall } else { EntryMode::Int3 };
        finish_probe(mode, then);
    }
    match f.vector {
        _ if is_syscall => k.syscall(m),
        TIMER_VECTOR => {
            apic::eoi();
            k.tick();
        }
        IPI_VECTOR => {
            // Something changed for this CPU: a thread became ready, or ours is gone.
            apic::eoi();
            k.reschedule();
        }
        SPURIOUS_VECTOR => {}
        v if v < 32 => {
            let addr = if v == 14 { cpu::cr2() } else { 0 };
            k.fault(m, v, f.error, addr);
        }
        _ => {}
    }
    run()
}

/// Entries from kernel mode: the idle loop's timer, or a kernel bug.
#[no_mangle]
extern "C" fn trap_from_kernel(frame: *mut UserRegs) {
    // SAFETY: the stub passes the frame it pushed on the kernel stack.
    let f = unsafe { *frame };
    match f.vector {
        // In the idle loop: the loop itself looks at the run queue once it has the lock.
        TIMER_VECTOR | IPI_VECTOR => {
            apic::eoi();
            smp::answer_shootdown(percpu::this_cpu());
        }
        SPURIOUS_VECTOR => {}
        v => {
            kprintln!("\nl4: KERNEL FAULT: vector ", v, " error ", Hex(f.error));
            kprintln!("  rip ", Hex(f.rip), " cs ", Hex(f.cs), " rflags ", Hex(f.rflags), " rsp ", Hex(f.rsp));
            kprintln!("  cr2 ", Hex(cpu::cr2()), " cr3 ", Hex(cpu::cr3()));
            kprintln!("  rax ", Hex(f.rax), " rbx ", Hex(f.rbx), " rcx ", Hex(f.rcx), " rdx ", Hex(f.rdx));
            kprintln!("  rsi ", Hex(f.rsi), " rdi ", Hex(f.rdi), " rbp ", Hex(f.rbp));
            super::exit(exit::KERNEL_FAULT);
        }
    }
}

/// Runs this CPU's current thread, or idles until there is one. Called with the big
/// kernel lock held and `enter_cpu` done.
pub fn run() -> ! {
    let me = percpu::this_cpu();
    loop {
        // SAFETY: trap context, interrupts off, the lock held; the references end before
        // the lock is dropped.
        let (k, _) = unsafe { state() };
        if k.current().is_none() {
            k.reschedule();
        }
        if let Some(t) = k.current() {
            enter_user(k, t);
        }
        if !k.anything_runnable() {
            kprintln!("l4: no thread can run any more (all wait for messages nobody can send)");
            super::exit(exit::FAILURE);
        }
        // Idle: give up the lock, the user address space and the FPU state, and halt.
        k.leave_cpu();
        let wake = core::mem::take(&mut k.wake);
        // SAFETY: this CPU's owner slot; saving the state of a live owner only.
        unsafe {
            let (slot, id) = FPU_OWNER[me];
            if id != 0 && k.threads[slot].id == id {
                cpu::fxsave(&mut k.threads[slot].fpu);
            }
            FPU_OWNER[me] = (0, 0);
        }
        if cpu::cr3() & !0xfff != k.kernel_root {
            // SAFETY: the kernel's own root maps everything the kernel needs.
            unsafe { cpu::set_cr3(k.kernel_root) };
        }
        smp::loaded(me, k.kernel_root);
        smp::unlock();
        smp::wake(wake);
        cpu::idle_wait();
        smp::answer_shootdown(me);
        smp::lock(me);
        // SAFETY: the lock is held again.
        let (k, _) = unsafe { state() };
        k.enter_cpu(me);
    }
}

/// Switches to thread `t`'s address space and x87/SSE state, and returns to user mode.
#[inline(always)]
fn enter_user(k: &mut Kernel, t: usize) -> ! {
    let me = k.cpu;
    let root = k.threads[t].root;
    if cpu::cr3() & !0xfff != root {
        // SAFETY: every task root is made by vspace::new_root, which maps the kernel.
        unsafe { cpu::set_cr3(root) };
        smp::loaded(me, root);
    }
    // SAFETY: this CPU's owner entry, under the lock. Thread ids are never reused, so a
    // new thread in a recycled slot never inherits its predecessor's registers.
    unsafe {
        let id = k.threads[t].id;
        if FPU_OWNER[me].1 != id {
            let (slot, owner) = FPU_OWNER[me];
            if owner != 0 && k.threads[slot].id == owner {
                cpu::fxsave(&mut k.threads[slot].fpu);
            }
            cpu::fxrstor(&k.threads[t].fpu);
            FPU_OWNER[me] = (t, id);
        }
    }
    let frame = &mut k.threads[t].regs as *mut UserRegs;
    entry::set_frame_top(me, frame as u64 + core::mem::size_of::<UserRegs>() as u64);
    if smp::active() {
        k.leave_cpu();
        let wake = core::mem::take(&mut k.wake);
        smp::unlock();
        if wake != 0 {
            smp::wake(wake);
        }
    }
    // SAFETY: the frame holds a valid user context (rip, cs = user, rflags with IF).
    unsafe { entry::return_to_user(frame) }
}
