//! What happens between entering and leaving the kernel: dispatch of every trap, the
//! choice of the user entry mechanism at boot, and the loop that runs the next thread or
//! idles.
//!
//! Invariants: the kernel state is only touched from here, with interrupts off (the one
//! exception, the idle loop's `hlt`, holds no reference to it while waiting); a user fault
//! never stops the kernel; a kernel fault prints its state and ends the VM with
//! `KERNEL_FAULT`.

use core::ptr::{addr_of, addr_of_mut};

use l4_abi::exit;
use l4_kernel::ipc::fastpath::Switch;
use l4_kernel::kernel::Kernel;
use l4_kernel::machine::UserRegs;
use l4_kernel::mm::vspace;
use l4_kernel::task::thread::Thread;

use super::entry::{self, IPI_VECTOR, SPURIOUS_VECTOR, SYSCALL_VECTOR, TIMER_VECTOR};
use super::irqstats::{IF0_IRQS, KERNEL_IRQS};
use super::platform::Machine;
use super::{apic, count, cpu, percpu, smp};
use crate::console::Hex;
use crate::{kprint, kprintln};

static mut KERNEL: Kernel = Kernel::new();
static mut MACHINE: Machine = Machine { vmm_zero: false, cpus: 1 };

/// How user code enters the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryMode {
    /// Not decided yet: the probe thread is running.
    Probing,
    Syscall,
    Int3,
}

static mut ENTRY_MODE: EntryMode = EntryMode::Probing;
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
    cpu::wrmsr(cpu::IA32_FMASK, SYSCALL_FMASK);
}

/// The RFLAGS bits `syscall` clears on entry: every bit a user can set that the kernel
/// does not want, as Linux's entry does. A user's NT would make the kernel's own `iretq`
/// raise #GP (the `int3` gate clears NT, so only `syscall` hosts see it), TF would
/// single-step the kernel, AC and DF change what kernel code does, IF must be off; the
/// arithmetic flags are cleared so the kernel never starts from user-chosen state. The
/// user's own RFLAGS are kept in R11 and restored on the way out.
pub const SYSCALL_FMASK: u64 = {
    const CF: u64 = 1 << 0;
    const PF: u64 = 1 << 2;
    const AF: u64 = 1 << 4;
    const ZF: u64 = 1 << 6;
    const SF: u64 = 1 << 7;
    const TF: u64 = 1 << 8;
    const IF: u64 = 1 << 9;
    const DF: u64 = 1 << 10;
    const OF: u64 = 1 << 11;
    const IOPL: u64 = 3 << 12;
    const NT: u64 = 1 << 14;
    const RF: u64 = 1 << 16;
    const AC: u64 = 1 << 18;
    const ID: u64 = 1 << 21;
    CF | PF | AF | ZF | SF | TF | IF | DF | OF | IOPL | NT | RF | AC | ID
};

/// Where boot is with the user entry: probing which one works, calibrating the VMM's
/// ring-0 instruction counter through it (`step` of the calibration), or done.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Probing,
    Calibrating(u64),
    Running,
}

static mut PHASE: Phase = Phase::Probing;
/// The probe thread's register frame (probing and calibration run on it).
static mut PROBE_FRAME: UserRegs = UserRegs::ZERO;
/// The probe address space's one code frame.
static mut PROBE_CODE: u64 = 0;

/// Chooses the user entry mechanism, calibrates the ring-0 instruction counter with it,
/// then calls `then` (in trap context).
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
    // A one-page address space: `syscall; ud2` at 0x10000.
    let root = vspace::new_root(m, &mut k.frames, k.kernel_root).expect("frames for the entry probe");
    let code = k.frames.alloc(m).expect("frames for the entry probe");
    l4_kernel::mm::PhysMem::write_bytes(m, code, &[0x0f, 0x05, 0x0f, 0x0b]);
    vspace::map(m, &mut k.frames, root, 0x10000, code, vspace::OWNED).expect("probe mapping");
    // SAFETY: boot, single CPU.
    unsafe {
        PROBE_ROOT = root;
        PROBE_CODE = code;
        AFTER_PROBE = Some(then);
        cpu::set_cr3(root);
    }
    if let Some(mode) = forced {
        // One CPU so far: no lock (start_aps takes it before a second CPU runs).
        k.enter_cpu(0);
        finish_probe(mode);
    }
    enter_probe()
}

/// Runs the probe thread from the start of its code page.
fn enter_probe() -> ! {
    let frame = UserRegs { rip: 0x10000, cs: 0x23, ss: 0x1b, rflags: 0x2, rsp: 0, ..UserRegs::default() };
    // SAFETY: boot, one CPU; the probe frame is a static, and the probe address space
    // (loaded) maps the kernel half.
    unsafe {
        let pf = addr_of_mut!(PROBE_FRAME);
        *pf = frame;
        entry::set_frame_top(pf as u64 + core::mem::size_of::<UserRegs>() as u64);
        entry::return_to_user(pf)
    }
}

/// The entry mechanism is known: fill the entry page, then calibrate the counter with it.
fn finish_probe(mode: EntryMode) -> ! {
    // SAFETY: trap context or boot, interrupts off; single CPU.
    let (k, m) = unsafe { state() };
    // SAFETY: as above.
    unsafe { ENTRY_MODE = mode };
    l4_kernel::mm::PhysMem::write_bytes(m, k.entry_frame, entry_code(mode));
    // The calibration loop: enter the kernel, jump back, enter again.
    let code: &[u8] = match mode {
        EntryMode::Syscall => &[0x0f, 0x05, 0xeb, 0xfc], // 1: syscall; jmp 1b
        _ => &[0xcc, 0xeb, 0xfd],                        // 1: int3; jmp 1b
    };
    // SAFETY: as above.
    unsafe {
        l4_kernel::mm::PhysMem::write_bytes(m, PROBE_CODE, code);
        PHASE = Phase::Calibrating(0);
    }
    enter_probe()
}

core::arch::global_asm!(
    r#"
    /* The end of a calibration window: with %rdi = 1 it first runs exactly {n} more
       instructions than with %rdi = 0; then it stops the count. Among them FXSAVE and
       FXRSTOR, next to each other and each followed by another instruction: PVM's single
       step runs the instruction after one of them along with it, which the counter
       corrects for (vmm/src/devices/counter.rs), so the calibration proves the correction
       in both cases. They save and load the same state. */
    .section .bss
    .p2align 4
calibration_fx:
    .zero 512
    .section .text, "ax"
    .global calibration_window_end
calibration_window_end:
    .cfi_startproc
    testq %rdi, %rdi
    jz 1f
    fxsave64 calibration_fx(%rip)
    fxrstor64 calibration_fx(%rip)
    addq $1, %rcx
    fxsave64 calibration_fx(%rip)
    addq $1, %rcx
    fxrstor64 calibration_fx(%rip)
    .rept {n} - 6
    addq $1, %rcx
    .endr
1:  movb ${stop}, %al
    outb %al, ${port}
    ret
    .cfi_endproc
"#,
    n = const l4_abi::port::CALIBRATION_INSTRUCTIONS,
    stop = const l4_abi::port::Marker::CountStop as u8,
    port = const l4_abi::port::MARKER,
    options(att_syntax)
);

extern "C" {
    fn calibration_window_end(long: u64);
}

/// One kernel entry of the counter's calibration (see vmm/src/devices/counter.rs): two
/// windows, each from a `CountStart` through the return to user mode, the entry back and
/// this code, to `calibration_window_end`; the second runs its extra instructions; then
/// `CountVerify` lets the VMM judge the difference. Both windows take exactly the same
/// path otherwise (same code, same branches). An entry that is not the chosen mechanism
/// (a forced `syscall` that faults) ends the calibration unverified: counts read n/a.
#[inline(never)]
fn calibration_step(step: u64, expected_entry: bool) -> ! {
    if !expected_entry {
        finish_boot();
    }
    if step > 0 {
        // SAFETY: plain code that clobbers only rax, rcx and flags (caller-saved); its
        // FXSAVE and FXRSTOR leave the x87/SSE state as it was.
        unsafe { calibration_window_end(step - 1) };
    }
    if step < 2 {
        // SAFETY: boot, one CPU.
        unsafe { PHASE = Phase::Calibrating(step + 1) };
        super::port::outb(l4_abi::port::MARKER, l4_abi::port::Marker::CountStart as u8);
        // SAFETY: the probe frame holds the probe thread's state, saved by this entry.
        unsafe { entry::return_to_user(core::ptr::addr_of!(PROBE_FRAME)) }
    }
    super::port::outb(l4_abi::port::MARKER, l4_abi::port::Marker::CountVerify as u8);
    finish_boot()
}

/// Probing and calibration are over: drop the probe address space, start the system.
fn finish_boot() -> ! {
    // SAFETY: trap context, interrupts off; single CPU.
    let (k, m) = unsafe { state() };
    // SAFETY: as above.
    let (mode, then) = unsafe {
        PHASE = Phase::Running;
        cpu::set_cr3(k.kernel_root);
        vspace::destroy(m, &mut k.frames, PROBE_ROOT);
        PROBE_ROOT = 0;
        (ENTRY_MODE, AFTER_PROBE.expect("probe continuation"))
    };
    kprintln!(
        "l4: user entry: ",
        if mode == EntryMode::Syscall { "syscall" } else { "int3 (syscall does not enter ring 0 here)" }
    );
    then();
    run()
}

/// Takes the big kernel lock on an entry from user mode (with one CPU there is nobody
/// to contend with, and nothing is done); returns whether there are several CPUs. Reads
/// nothing of the entry's frame: see `trap_from_user`.
#[inline(always)]
fn lock_kernel(k: &mut Kernel) -> bool {
    let smp = smp::active();
    if smp {
        let me = percpu::this_cpu();
        smp::answer_shootdown(me);
        smp::lock(me);
        k.enter_cpu(me);
    }
    smp
}

/// The system-call entries (`syscall`, or `int3` at the entry page) go on here for
/// `Null` (the number is dispatched in the entry stub): answered on the spot
/// ([`Kernel::fast_null`]) when nothing of a higher priority waits, else the slow path.
/// Neither this nor [`syscall_ipc`] returns, so neither restores what it saves.
#[no_mangle]
extern "C" fn syscall_null(frame: *mut UserRegs) -> ! {
    // What entered, read before the lock (see `trap_from_user`).
    // SAFETY: the entry stub passes the frame it just filled (a TCB's regs or the probe's).
    let vector = unsafe { (*frame).vector };
    // SAFETY: trap context, interrupts off; the lock is taken first thing.
    let (k, m) = unsafe { state() };
    let smp = lock_kernel(k);
    if k.fast_null(m) {
        // The caller goes on: its address space, x87 state and frame are still this
        // CPU's, and its frame is the one it entered with.
        if smp {
            unlock_kernel(k);
        }
        // SAFETY: the caller's own frame, as it entered (with its result).
        unsafe { entry::return_to_user(frame) }
    }
    trap_slow(frame, vector, true)
}

/// Every other system call (`sysno`, its number): the IPC fast path
/// ([`Kernel::fastpath`]) where it applies, else the slow path.
#[no_mangle]
extern "C" fn syscall_ipc(frame: *mut UserRegs, sysno: u64) -> ! {
    // SAFETY: as in `syscall_null`.
    let vector = unsafe { (*frame).vector };
    // SAFETY: trap context, interrupts off; the lock is taken first thing.
    let (k, _) = unsafe { state() };
    let smp = lock_kernel(k);
    // No current thread while the entry is probed and the counter calibrated (the probe
    // thread is not a kernel thread): the fast path declines, and `trap_slow` knows.
    let Some(Switch { from, to, words_in }) = k.fastpath(sysno) else { trap_slow(frame, vector, true) };
    debug_assert!([from, to, words_in].iter().all(|&t| (t as usize) < k.threads.len()));
    let th = k.threads.as_mut_ptr();
    // SAFETY: the fast path names threads: the one that entered, `to`, and where the words
    // are (one of the two).
    let (me, to, words) =
        unsafe { (th.add(from as usize), th.add(to as usize), addr_of!((*th.add(words_in as usize)).regs)) };
    let frame = switch_ipc(k, me, to);
    // The exit drops the lock once it has read both frames: until then no other CPU may
    // kill the sender and reuse its TCB.
    if smp {
        release_kernel(k);
    }
    // SAFETY: `frame` is the saved state of the thread the fast path made current (a
    // valid user context), `words` the sender's or its own.
    unsafe { smp::return_to_user_words(frame, words) }
}

/// Every other entry from user mode: exceptions, interrupts, an `int3` that is not a
/// system call (the frame is the current thread's `regs`).
#[no_mangle]
extern "C" fn trap_from_user(frame: *mut UserRegs) -> ! {
    // What entered, read before anything else: the frame lies in the interrupted thread's
    // TCB, and another CPU may be killing that thread right now. It cannot free the TCB
    // before this CPU has answered its shootdown below (a dying task's address space is
    // retired before its threads), but once this CPU waits for the lock it may, and reuse
    // the slot; then the frame is someone else's and only this vector is ours.
    // SAFETY: the entry stub passes the frame it just filled (a TCB's regs or the probe's).
    let vector = unsafe { (*frame).vector };
    // SAFETY: trap context, interrupts off; the big kernel lock is taken first thing.
    let (k, _) = unsafe { state() };
    lock_kernel(k);
    trap_slow(frame, vector, false)
}

/// Everything but the fast path. `frame` is the current thread's saved state if this CPU
/// still has a current thread (the entry's thread); if another CPU killed that thread
/// meanwhile there is none, and only `vector` is used (an interrupt is still
/// acknowledged).
#[inline(never)]
fn trap_slow(frame: *mut UserRegs, vector: u64, is_syscall: bool) -> ! {
    // SAFETY: trap context, interrupts off.
    let (k, m) = unsafe { state() };
    // SAFETY: written only at boot, on one CPU.
    match unsafe { PHASE } {
        Phase::Probing => finish_probe(if vector == SYSCALL_VECTOR { EntryMode::Syscall } else { EntryMode::Int3 }),
        Phase::Calibrating(step) => {
            let expected = if entry_mode() == EntryMode::Syscall { SYSCALL_VECTOR } else { 3 };
            calibration_step(step, vector == expected)
        }
        Phase::Running => {}
    }
    match vector {
        _ if is_syscall => k.syscall(m),
        TIMER_VECTOR => {
            apic::eoi();
            count::on_timer();
            k.tick();
        }
        IPI_VECTOR => {
            // Something changed for this CPU: a thread became ready, or ours is gone.
            apic::eoi();
            k.reschedule();
        }
        SPURIOUS_VECTOR => {}
        v if v < 32 && k.current().is_some() => {
            let addr = if v == 14 { cpu::cr2() } else { 0 };
            // SAFETY: this CPU's current thread is the one that entered, so the frame
            // (its TCB's registers) is still its own.
            let error = unsafe { (*frame).error };
            k.fault(m, v, error, addr);
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
    // The kernel runs with interrupts off except in the idle loop's `sti; hlt`: an
    // external interrupt whose frame says IF=0 is the (virtual) CPU breaking x86's rules
    // (QEMU's emulated SVM does, see docs/HOSTS.md). The entry stub has fixed GS for it;
    // what it interrupted holds no lock of ours it could need, so acknowledging it, as in
    // the idle loop, is all it takes. Counted, and reported once.
    if matches!(f.vector, TIMER_VECTOR | IPI_VECTOR) && f.rflags & RFLAGS_IF == 0 {
        note_host_fault(&f);
    }
    match f.vector {
        // In the idle loop: the loop itself looks at the run queue once it has the lock.
        TIMER_VECTOR | IPI_VECTOR => {
            apic::eoi();
            if f.vector == TIMER_VECTOR {
                count::on_timer();
            }
            KERNEL_IRQS.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
            smp::answer_shootdown(percpu::this_cpu());
        }
        SPURIOUS_VECTOR => {}
        // SAFETY: as above; the stub restores the frame's rip when it returns.
        INVALID_OPCODE if super::ktest::steps_fault_fixup(unsafe { &mut (*frame).rip }) => {}
        v => {
            kprintln!("\nl4: KERNEL FAULT: vector ", v, " error ", Hex(f.error));
            kprintln!("  rip ", Hex(f.rip), " cs ", Hex(f.cs), " rflags ", Hex(f.rflags), " rsp ", Hex(f.rsp));
            kprintln!("  cr2 ", Hex(cpu::cr2()), " cr3 ", Hex(cpu::cr3()));
            kprintln!("  rax ", Hex(f.rax), " rbx ", Hex(f.rbx), " rcx ", Hex(f.rcx), " rdx ", Hex(f.rdx));
            kprintln!("  rsi ", Hex(f.rsi), " rdi ", Hex(f.rdi), " rbp ", Hex(f.rbp));
            // The stack the fault interrupted (a nested fault has the first one's frame
            // there), if it lies in the kernel image (mapped in every address space).
            let (lo, hi) = super::kernel_virt_range();
            if f.rsp >= lo && f.rsp % 8 == 0 && f.rsp.saturating_add(48 * 8) <= hi {
                kprint!("  stack:");
                for i in 0..48u64 {
                    // SAFETY: inside the kernel image, aligned: mapped and readable.
                    let w = unsafe { ((f.rsp + i * 8) as *const u64).read_volatile() };
                    if i % 4 == 0 {
                        kprint!("\n   ");
                    }
                    kprint!(" ", Hex(w));
                }
                kprintln!();
            }
            super::exit(exit::KERNEL_FAULT);
        }
    }
}

/// #UD.
const INVALID_OPCODE: u64 = 6;

/// RFLAGS.IF.
const RFLAGS_IF: u64 = 1 << 9;

/// The host delivered an interrupt while interrupts were disabled: say so the first time.
fn note_host_fault(f: &UserRegs) {
    if IF0_IRQS.fetch_add(1, core::sync::atomic::Ordering::Relaxed) == 0 {
        kprintln!(
            "l4: warning: the host delivered interrupt vector ",
            f.vector,
            " while interrupts were disabled (rflags ",
            Hex(f.rflags),
            ", rip ",
            Hex(f.rip),
            "): its virtual CPU breaks x86's interrupt flag; tolerated (docs/HOSTS.md)"
        );
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
        let (owner, id) = percpu::fpu_owner();
        // SAFETY: the owner's TCB is in the thread table or NOBODY (see `percpu`), read
        // and written only through this pointer, under the lock.
        if id != 0 && unsafe { (*owner).id } == id {
            // SAFETY: as above.
            cpu::fxsave(unsafe { addr_of_mut!((*owner).fpu) });
        }
        percpu::set_fpu_owner(percpu::nobody(), 0);
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
    let frame = leave_for(k, t, smp::active());
    // SAFETY: the frame holds a valid user context (rip, cs = user, rflags with IF).
    unsafe { entry::return_to_user(frame) }
}

/// Makes thread `t` this CPU's ([`switch_to`]) and lets go of the kernel; returns the
/// frame to restore.
#[inline(always)]
fn leave_for(k: &mut Kernel, t: usize, smp: bool) -> *const UserRegs {
    debug_assert!(t < k.threads.len());
    // SAFETY: `t` is this CPU's current thread, so a thread's index.
    let th = unsafe { k.threads.as_mut_ptr().add(t) };
    let frame = switch_to(k, th);
    if smp {
        unlock_kernel(k);
    }
    frame
}

/// Makes thread `th` (this CPU's current thread) this CPU's: its address space, its
/// x87/SSE state and its frame as the place of the next entry; returns the frame to
/// restore. Each step is skipped where it is already so (the same address space, the
/// same thread's x87 state).
#[inline(always)]
fn switch_to(k: &mut Kernel, th: *mut Thread) -> *const UserRegs {
    switch_space(k, th);
    // SAFETY: the caller's current thread, in the thread table; the TCB is reached only
    // through this pointer until the kernel is left.
    let id = unsafe { (*th).id };
    // The previous owner's state is saved only if it still lives: thread ids are never
    // reused (a new thread gets a new id), so a recycled slot never gets its
    // predecessor's state saved over its own, nor inherits its registers. With nobody
    // (id 0) NOBODY or a free slot may match (free slots have id 0): saving into either is
    // harmless, as a slot is reset (`Thread::FREE`, the reset x87 state) when it is used
    // again.
    let (owner, owner_id) = percpu::fpu_owner();
    if owner_id != id {
        // SAFETY: the owner's TCB is in the thread table or NOBODY (see `percpu`), which
        // stay mapped; it is not `th` (the ids differ), and reached only through `owner`.
        if unsafe { (*owner).id } == owner_id {
            // SAFETY: as above.
            cpu::fxsave(unsafe { addr_of_mut!((*owner).fpu) });
        }
        // SAFETY: as for `id`.
        cpu::fxrstor(unsafe { addr_of!((*th).fpu) });
        percpu::set_fpu_owner(th, id);
    }
    entry_frame(th)
}

/// The fast path's [`switch_to`], from thread `from` (the caller) to `to`: this CPU holds
/// `from`'s x87 state, as a CPU always holds the state of the thread that entered it
/// from user mode (`switch_to` made it the owner when it entered it), so it is saved
/// without asking whose it is.
#[inline(always)]
fn switch_ipc(k: &mut Kernel, from: *mut Thread, to: *mut Thread) -> *const UserRegs {
    debug_assert!(percpu::fpu_owner().0 == from);
    switch_space(k, to);
    // SAFETY: two threads of the table, different (one waits, the other runs), reached
    // only through these pointers until the kernel is left.
    unsafe {
        cpu::fxsave(addr_of_mut!((*from).fpu));
        cpu::fxrstor(addr_of!((*to).fpu));
        percpu::set_fpu_owner(to, (*to).id);
    }
    entry_frame(to)
}

/// Loads thread `th`'s address space if another is loaded.
#[inline(always)]
fn switch_space(k: &mut Kernel, th: *mut Thread) {
    // SAFETY: a thread of the table (the one to enter).
    let root = unsafe { (*th).root };
    if cpu::cr3() & !0xfff != root {
        // SAFETY: every task root is made by vspace::new_root, which maps the kernel.
        unsafe { cpu::set_cr3(root) };
        smp::loaded(k.cpu, root);
    }
}

/// Makes thread `th`'s frame the place of this CPU's next entry; returns it.
#[inline(always)]
fn entry_frame(th: *mut Thread) -> *const UserRegs {
    // SAFETY: a thread of the table (the one to enter).
    let frame = unsafe { addr_of!((*th).regs) };
    entry::set_frame_top(frame as u64 + core::mem::size_of::<UserRegs>() as u64);
    frame
}

/// This CPU leaves the kernel: its current thread back in its slot, the lock dropped,
/// and the CPUs that have new work woken.
#[inline(always)]
fn unlock_kernel(k: &mut Kernel) {
    k.leave_cpu();
    let wake = core::mem::take(&mut k.wake);
    smp::unlock();
    if wake != 0 {
        smp::wake(wake);
    }
}

/// [`unlock_kernel`] but for the lock itself, which the caller drops later: the CPUs
/// that have new work are woken now (they wait for the lock until it is dropped).
#[inline(always)]
fn release_kernel(k: &mut Kernel) {
    k.leave_cpu();
    let wake = core::mem::take(&mut k.wake);
    if wake != 0 {
        smp::wake(wake);
    }
}
