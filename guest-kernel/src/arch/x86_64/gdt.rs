//! The GDT and the TSS.
//!
//! Selectors: 0x08 kernel code, 0x10 kernel data, 0x1b user data, 0x23 user code (the order
//! `sysret` needs: STAR[63:48] = 0x10), 0x28 the TSS. The TSS's RSP0 points at the end of
//! the current thread's register frame, so an interrupt or exception from user mode pushes
//! its frame straight into the thread's TCB; IST1 is a separate stack for double faults
//! and NMIs.
//!
//! Invariant: RSP0 always points at the frame end of `Kernel::current` while user code runs.

use core::ptr::addr_of_mut;

pub const KERNEL_CS: u16 = 0x08;
pub const KERNEL_SS: u16 = 0x10;
pub const TSS_SEL: u16 = 0x28;

#[repr(C, packed)]
struct Tss {
    _reserved0: u32,
    rsp: [u64; 3],
    _reserved1: u64,
    ist: [u64; 7],
    _reserved2: u64,
    _reserved3: u16,
    iomap_base: u16,
}

/// The most CPUs the kernel runs on (the portable kernel's limit).
pub const MAX_CPUS: usize = l4_kernel::kernel::MAX_CPUS;

const TSS0: Tss =
    Tss { _reserved0: 0, rsp: [0; 3], _reserved1: 0, ist: [0; 7], _reserved2: 0, _reserved3: 0, iomap_base: 104 };
/// One TSS per CPU (RSP0 is per CPU: the frame of the thread that CPU runs).
static mut TSS: [Tss; MAX_CPUS] = [TSS0; MAX_CPUS];

const GDT0: [u64; 7] = [
    0,
    0x00af_9a00_0000_ffff, // 0x08 kernel code (64-bit)
    0x00cf_9200_0000_ffff, // 0x10 kernel data
    0x00cf_f200_0000_ffff, // 0x18 user data (DPL 3)
    0x00af_fa00_0000_ffff, // 0x20 user code (64-bit, DPL 3)
    0,                     // 0x28 TSS (low)
    0,                     // 0x30 TSS (high)
];
/// One GDT per CPU (each with its own TSS descriptor).
static mut GDT: [[u64; 7]; MAX_CPUS] = [GDT0; MAX_CPUS];

/// The operand of `lgdt`/`lidt`.
#[repr(C, packed)]
pub struct DescPtr {
    pub limit: u16,
    pub base: u64,
}

#[repr(C, align(16))]
struct Stack([u8; 8192]);
static mut IST1_STACK: [Stack; MAX_CPUS] = [const { Stack([0; 8192]) }; MAX_CPUS];

/// Loads CPU `cpu`'s GDT and TSS.
pub fn init(cpu: usize) {
    // SAFETY: runs once per CPU at its start, on that CPU, before any interrupt can use
    // its TSS; each CPU only touches its own entries; the statics live forever.
    unsafe {
        let tss = core::ptr::addr_of_mut!((*addr_of_mut!(TSS))[cpu]);
        (*tss).ist[0] = core::ptr::addr_of_mut!((*addr_of_mut!(IST1_STACK))[cpu]) as u64 + 8192;
        let base = tss as u64;
        let limit = (core::mem::size_of::<Tss>() - 1) as u64;
        let gdt = core::ptr::addr_of_mut!((*addr_of_mut!(GDT))[cpu]);
        (*gdt)[5] = limit | ((base & 0xff_ffff) << 16) | (0x89 << 40) | (((base >> 24) & 0xff) << 56);
        (*gdt)[6] = base >> 32;
        let ptr = DescPtr { limit: (core::mem::size_of::<[u64; 7]>() - 1) as u16, base: gdt as u64 };
        core::arch::asm!(
            "lgdt [{ptr}]",
            "push {cs}",
            "lea {tmp}, [rip + 2f]",
            "push {tmp}",
            "retfq",
            "2:",
            "mov {tmp:e}, {ss}",
            "mov ss, {tmp:e}",
            "mov ds, {tmp:e}",
            "mov es, {tmp:e}",
            "ltr {tss:x}",
            ptr = in(reg) &ptr,
            cs = const KERNEL_CS as u64,
            ss = const KERNEL_SS as u32,
            tss = in(reg) TSS_SEL,
            tmp = out(reg) _,
        );
    }
}

/// The address of CPU `cpu`'s RSP0 (where it pushes the frame of its next interrupt
/// from user mode): `percpu::set_frame_top` writes it there.
pub fn rsp0_at(cpu: usize) -> u64 {
    // SAFETY: only the address of a field of a static is taken.
    unsafe { core::ptr::addr_of_mut!((*addr_of_mut!(TSS))[cpu].rsp[0]) as u64 }
}
