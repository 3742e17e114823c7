//! Per-CPU state, reached through GS: each CPU's GS base points at its own [`PerCpu`]
//! while it runs kernel code (entries from user mode `swapgs` in, exits `swapgs` out).
//!
//! Invariant: the field offsets below match the entry stubs' `%gs:` operands.

use core::ptr::addr_of_mut;

use super::cpu;
use super::gdt::MAX_CPUS;
use l4_kernel::task::thread::Thread;

/// Offsets used by the entry stubs.
pub const USER_RSP: usize = 8;
pub const FRAME_TOP: usize = 16;
pub const KSTACK: usize = 32;
/// Offsets of the fields the exit path reaches through GS.
const RSP0_AT: usize = 40;
const FPU_OWNER: usize = 48;
const FPU_ID: usize = 56;

#[repr(C)]
pub struct PerCpu {
    /// Points at itself.
    self_ptr: u64,
    /// The user's RSP during a `syscall` entry.
    user_rsp: u64,
    /// End of the current thread's register frame (the `syscall` entry builds it there).
    frame_top: u64,
    /// This CPU's index.
    cpu: u64,
    /// Top of this CPU's kernel stack.
    kstack: u64,
    /// Where this CPU's TSS keeps RSP0 (written with the frame top on every switch).
    rsp0_at: u64,
    /// The thread whose x87/SSE state is in this CPU: where its TCB is and its id (id 0:
    /// nobody, with [`NOBODY`]'s address). The TCB is in the thread table (a static) or
    /// `NOBODY`, so it can always be read; whether it still holds that thread is what the
    /// id says (see `trap::switch_to`).
    fpu_owner: u64,
    fpu_id: u64,
}

const _: () = {
    assert!(core::mem::offset_of!(PerCpu, user_rsp) == USER_RSP);
    assert!(core::mem::offset_of!(PerCpu, frame_top) == FRAME_TOP);
    assert!(core::mem::offset_of!(PerCpu, kstack) == KSTACK);
    assert!(core::mem::offset_of!(PerCpu, rsp0_at) == RSP0_AT);
    assert!(core::mem::offset_of!(PerCpu, fpu_owner) == FPU_OWNER);
    assert!(core::mem::offset_of!(PerCpu, fpu_id) == FPU_ID);
};

const KSTACK_SIZE: usize = 32 * 1024;

#[repr(C, align(4096))]
struct KernelStack([u8; KSTACK_SIZE]);

static mut PERCPU: [PerCpu; MAX_CPUS] = [const {
    PerCpu { self_ptr: 0, user_rsp: 0, frame_top: 0, cpu: 0, kstack: 0, rsp0_at: 0, fpu_owner: 0, fpu_id: 0 }
}; MAX_CPUS];

/// The x87/SSE owner "nobody" stands for: a free TCB (id 0) outside the table, which no
/// thread ever becomes. Reached only through raw pointers, under the kernel lock: its id
/// is read, and a state nobody owns may be saved into its `fpu` (harmless).
pub static mut NOBODY: Thread = Thread::FREE;
static mut KSTACKS: [KernelStack; MAX_CPUS] = [const { KernelStack([0; KSTACK_SIZE]) }; MAX_CPUS];

pub const IA32_GS_BASE: u32 = 0xc000_0101;
const IA32_KERNEL_GS_BASE: u32 = 0xc000_0102;

/// Sets up CPU `n`'s block and points this CPU's GS base at it. Call once per CPU.
pub fn init(n: usize) {
    // SAFETY: each CPU initialises only its own block, once, before using it.
    let p = unsafe { core::ptr::addr_of_mut!((*addr_of_mut!(PERCPU))[n]) };
    let top = kstack(n);
    // SAFETY: `p` is this CPU's block.
    unsafe {
        (*p).self_ptr = p as u64;
        (*p).cpu = n as u64;
        (*p).kstack = top;
        (*p).rsp0_at = super::gdt::rsp0_at(n);
        (*p).fpu_owner = nobody() as u64;
    }
    cpu::wrmsr(IA32_GS_BASE, p as u64);
    cpu::wrmsr(IA32_KERNEL_GS_BASE, 0);
}

/// The index of the CPU running this code.
pub fn this_cpu() -> usize {
    let n: u64;
    // SAFETY: GS points at this CPU's block while kernel code runs (set in `init`).
    unsafe { core::arch::asm!("mov {}, gs:[24]", out(reg) n, options(nostack, readonly, preserves_flags)) };
    n as usize
}

/// Sets where this CPU's next user entry's frame ends: the `syscall` entry builds its
/// frame below `top` (the frame top), interrupts and exceptions push theirs there (the
/// TSS's RSP0). Three stores, no bounds check: the exit path's budget.
#[inline(always)]
pub fn set_frame_top(top: u64) {
    // SAFETY: this CPU's own block, through GS; `rsp0_at` points at this CPU's TSS RSP0
    // field (set by `init`), which the CPU reads only on a privilege change, and which
    // only this CPU writes.
    unsafe {
        core::arch::asm!(
            "mov gs:[{ft}], {top}",
            "mov {p}, gs:[{at}]",
            "mov [{p}], {top}",
            top = in(reg) top,
            p = out(reg) _,
            ft = const FRAME_TOP,
            at = const RSP0_AT,
            options(nostack, preserves_flags)
        )
    };
}

/// Where [`NOBODY`] is.
pub fn nobody() -> *mut Thread {
    addr_of_mut!(NOBODY)
}

/// The thread whose x87/SSE state this CPU holds: (its TCB, its id), ([`nobody`], 0)
/// for nobody. The TCB may since have been freed or reused: compare the id.
#[inline(always)]
pub fn fpu_owner() -> (*mut Thread, u64) {
    let (owner, id): (u64, u64);
    // SAFETY: this CPU's own block, through GS.
    unsafe {
        core::arch::asm!(
            "mov {o}, gs:[{fo}]",
            "mov {i}, gs:[{fi}]",
            o = out(reg) owner,
            i = out(reg) id,
            fo = const FPU_OWNER,
            fi = const FPU_ID,
            options(nostack, readonly, preserves_flags)
        )
    };
    (owner as *mut Thread, id)
}

/// Records that this CPU now holds the x87/SSE state of the thread with TCB `owner` and
/// id `id` (or nobody's: [`nobody`], 0).
#[inline(always)]
pub fn set_fpu_owner(owner: *mut Thread, id: u64) {
    // SAFETY: this CPU's own block, through GS.
    unsafe {
        core::arch::asm!(
            "mov gs:[{fo}], {o}",
            "mov gs:[{fi}], {i}",
            o = in(reg) owner as u64,
            i = in(reg) id,
            fo = const FPU_OWNER,
            fi = const FPU_ID,
            options(nostack, preserves_flags)
        )
    };
}

/// Top of CPU `n`'s kernel stack (valid before CPU `n` runs: the AP starts on it).
pub fn kstack(n: usize) -> u64 {
    // SAFETY: only the address of a static is taken.
    unsafe { core::ptr::addr_of_mut!((*addr_of_mut!(KSTACKS))[n]) as u64 + KSTACK_SIZE as u64 }
}
