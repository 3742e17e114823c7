//! Per-CPU state, reached through GS: each CPU's GS base points at its own [`PerCpu`]
//! while it runs kernel code (entries from user mode `swapgs` in, exits `swapgs` out).
//!
//! Invariant: the field offsets below match the entry stubs' `%gs:` operands.

use core::ptr::addr_of_mut;

use super::cpu;
use super::gdt::MAX_CPUS;

/// Offsets used by the entry stubs.
pub const USER_RSP: usize = 8;
pub const FRAME_TOP: usize = 16;
pub const KSTACK: usize = 32;

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
}

const KSTACK_SIZE: usize = 32 * 1024;

#[repr(C, align(4096))]
struct KernelStack([u8; KSTACK_SIZE]);

static mut PERCPU: [PerCpu; MAX_CPUS] =
    [const { PerCpu { self_ptr: 0, user_rsp: 0, frame_top: 0, cpu: 0, kstack: 0 } }; MAX_CPUS];
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

/// Sets this CPU's frame top (read by the `syscall` entry).
pub fn set_frame_top(top: u64) {
    // SAFETY: this CPU's own block, through GS.
    unsafe { core::arch::asm!("mov gs:[16], {}", in(reg) top, options(nostack, preserves_flags)) };
}

/// Top of CPU `n`'s kernel stack (valid before CPU `n` runs: the AP starts on it).
pub fn kstack(n: usize) -> u64 {
    // SAFETY: only the address of a static is taken.
    unsafe { core::ptr::addr_of_mut!((*addr_of_mut!(KSTACKS))[n]) as u64 + KSTACK_SIZE as u64 }
}
