//! Several CPUs: the big kernel lock, inter-processor interrupts, TLB shootdowns, and the
//! start of the application processors with INIT/SIPI.
//!
//! Locking design: one big kernel lock around all kernel work. A CPU takes it after
//! entering from user mode (and after its idle `hlt`) and drops it right before returning
//! to user mode (or halting). The kernel is non-preemptible, so critical sections are
//! whole system calls; the fast path runs under the lock too. While spinning for the lock
//! a CPU keeps answering TLB shootdowns, so a lock holder can wait for them.
//!
//! TLB shootdown: every CPU records which page-table root it has loaded. A CPU that
//! changes mappings of a root that another CPU has loaded marks that CPU, interrupts it,
//! and waits until it has reloaded CR3 (which drops all non-global translations). Idle
//! CPUs load the kernel's own root, so they never hold stale user translations.

use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use super::entry::IPI_VECTOR;
use super::gdt::MAX_CPUS;
use super::{cpu, PHYS_OFFSET};
use l4_kernel::machine::UserRegs;

/// The big kernel lock (also dropped by [`return_to_user_words`], with a plain store: a
/// release on x86).
static LOCK: AtomicBool = AtomicBool::new(false);
/// Set once a second CPU is online; until then the kernel skips the lock and the
/// shootdown checks (one CPU cannot contend with itself).
static ACTIVE: AtomicBool = AtomicBool::new(false);

/// Whether more than one CPU runs.
#[inline(always)]
pub fn active() -> bool {
    ACTIVE.load(Ordering::Relaxed)
}
/// The root each CPU has loaded in CR3.
static LOADED_ROOT: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// Pending shootdown per CPU: 0 none; a root: reload CR3; a root | 1: that address space
/// goes away, leave it for the kernel's own root.
static SHOOT: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// Local APIC IDs by CPU index.
static APIC_ID: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// Application processors that reached `ap_main`.
pub static ONLINE: AtomicUsize = AtomicUsize::new(1);

/// Takes the big kernel lock, answering shootdowns while waiting.
#[inline(always)]
pub fn lock(me: usize) {
    while LOCK.swap(true, Ordering::Acquire) {
        while LOCK.load(Ordering::Relaxed) {
            answer_shootdown(me);
            core::hint::spin_loop();
        }
    }
}

/// Drops the big kernel lock.
pub fn unlock() {
    LOCK.store(false, Ordering::Release);
}

core::arch::global_asm!(
    r#"
    /* The frame at %rdi, but the 8 message registers from the frame at %rsi (a full
       message the fast path left in its sender's frame); with several CPUs the big kernel
       lock is dropped after the last load from either frame (whether there are several
       is settled at boot, before any user thread runs). Moves do not touch the flags the
       first compare sets. */
    .section .text.entry, "ax"
    .global return_to_user_words
return_to_user_words:
    .cfi_startproc
    .cfi_undefined rip
    cmpb $0, {active}(%rip)
    movq {r15}(%rsi), %r15
    movq {r14}(%rsi), %r14
    movq {r13}(%rsi), %r13
    movq {r12}(%rsi), %r12
    movq {r11}(%rdi), %r11
    movq {r10}(%rsi), %r10
    movq {r9}(%rsi), %r9
    movq {r8}(%rsi), %r8
    movq {rbp}(%rdi), %rbp
    movq {rdx}(%rsi), %rdx
    movq {rcx}(%rdi), %rcx
    movq {rbx}(%rdi), %rbx
    movq {rax}(%rdi), %rax
    movq {rsi}(%rdi), %rsi
    leaq {rip}(%rdi), %rsp
    movq {rdi}(%rdi), %rdi
    je 1f
    movb $0, {lock}(%rip)
1:  swapgs
    iretq
    .cfi_endproc
"#,
    r15 = const core::mem::offset_of!(UserRegs, r15),
    r14 = const core::mem::offset_of!(UserRegs, r14),
    r13 = const core::mem::offset_of!(UserRegs, r13),
    r12 = const core::mem::offset_of!(UserRegs, r12),
    r11 = const core::mem::offset_of!(UserRegs, r11),
    r10 = const core::mem::offset_of!(UserRegs, r10),
    r9 = const core::mem::offset_of!(UserRegs, r9),
    r8 = const core::mem::offset_of!(UserRegs, r8),
    rbp = const core::mem::offset_of!(UserRegs, rbp),
    rdi = const core::mem::offset_of!(UserRegs, rdi),
    rsi = const core::mem::offset_of!(UserRegs, rsi),
    rdx = const core::mem::offset_of!(UserRegs, rdx),
    rcx = const core::mem::offset_of!(UserRegs, rcx),
    rbx = const core::mem::offset_of!(UserRegs, rbx),
    rax = const core::mem::offset_of!(UserRegs, rax),
    rip = const core::mem::offset_of!(UserRegs, rip),
    lock = sym LOCK,
    active = sym ACTIVE,
    options(att_syntax)
);

extern "C" {
    /// The fast path's exit (`trap::syscall_ipc`): restores the registers in `frame`, but
    /// the message registers from `words` (a full message's sender), drops the big kernel
    /// lock if several CPUs run, after its last read of either frame (until then no other
    /// CPU may kill the sender and reuse its TCB), and returns to user mode.
    pub fn return_to_user_words(frame: *const UserRegs, words: *const UserRegs) -> !;
}

/// Records that this CPU (`me`, below `MAX_CPUS`) loaded `root` into CR3.
#[inline(always)]
pub fn loaded(me: usize, root: u64) {
    const _: () = assert!(MAX_CPUS.is_power_of_two());
    debug_assert!(me < MAX_CPUS);
    // The mask changes no CPU's index and spares the bounds check (the exit path's budget).
    LOADED_ROOT[me & (MAX_CPUS - 1)].store(root, Ordering::Release);
}

/// The kernel's own page-table root (loaded by idle CPUs).
static KERNEL_ROOT: AtomicU64 = AtomicU64::new(0);

pub fn set_kernel_root(root: u64) {
    KERNEL_ROOT.store(root, Ordering::Relaxed);
}

/// Does what another CPU asked: reload CR3, or leave a dying address space.
#[inline(always)]
pub fn answer_shootdown(me: usize) {
    let req = SHOOT[me].load(Ordering::Acquire);
    if req != 0 {
        let r = cpu::cr3() & !0xfff;
        let target = if req & 1 != 0 && r == req & !1 { KERNEL_ROOT.load(Ordering::Relaxed) } else { r };
        // SAFETY: either the same root (drops stale translations) or the kernel's own,
        // which maps everything the kernel needs.
        unsafe { cpu::set_cr3(target) };
        LOADED_ROOT[me].store(target, Ordering::Release);
        SHOOT[me].store(0, Ordering::Release);
    }
}

/// Makes every other CPU that has `root` loaded drop its translations (`retire`: leave
/// that address space altogether), and waits until they have.
pub fn shootdown(me: usize, cpus: usize, root: u64, retire: bool) {
    let mut waiting = 0u64;
    for c in 0..cpus {
        if c != me && LOADED_ROOT[c].load(Ordering::Acquire) == root {
            SHOOT[c].store(root | u64::from(retire), Ordering::Release);
            send_ipi(c);
            waiting |= 1 << c;
        }
    }
    while waiting != 0 {
        for c in 0..cpus {
            if waiting & (1 << c) != 0 && SHOOT[c].load(Ordering::Acquire) == 0 {
                waiting &= !(1 << c);
            }
        }
        core::hint::spin_loop();
    }
}

const ICR_LOW: u64 = 0x300;
const ICR_HIGH: u64 = 0x310;

fn apic_write(reg: u64, v: u32) {
    // SAFETY: the local APIC page is mapped uncached in the direct map.
    unsafe { ((PHYS_OFFSET + 0xfee0_0000 + reg) as *mut u32).write_volatile(v) };
}

fn apic_read(reg: u64) -> u32 {
    // SAFETY: as above.
    unsafe { ((PHYS_OFFSET + 0xfee0_0000 + reg) as *const u32).read_volatile() }
}

fn icr(apic_id: u64, low: u32) {
    apic_write(ICR_HIGH, (apic_id as u32) << 24);
    apic_write(ICR_LOW, low);
    while apic_read(ICR_LOW) & (1 << 12) != 0 {
        core::hint::spin_loop();
    }
}

/// Interrupts CPU `c` (it wakes from `hlt`, or enters the kernel from user mode).
pub fn send_ipi(c: usize) {
    icr(APIC_ID[c].load(Ordering::Relaxed), IPI_VECTOR as u32 | (1 << 14));
}

/// Sends the IPIs the kernel asked for in `wake`. (A plain loop: `trailing_zeros` would
/// compile to `tzcnt`, which KVM's emulator runs as `bsf`; tests/kernel_image.rs refuses
/// it in ring-0 code.)
pub fn wake(mask: u64) {
    for c in 0..MAX_CPUS {
        if mask & (1 << c) != 0 {
            send_ipi(c);
        }
    }
}

/// This CPU's local APIC ID.
pub fn my_apic_id() -> u64 {
    u64::from(apic_read(0x20) >> 24)
}

/// Physical page of the AP start code (below 1 MiB, not used by the loaders' data).
const TRAMPOLINE: u64 = 0x8000;

/// How long the BSP waits for an AP to come up, in TSC cycles (2^33: ~3 s at 2.6 GHz).
const AP_START_CYCLES: u64 = 1 << 33;

core::arch::global_asm!(
    r#"
    .section .rodata.ap_trampoline, "a"
    .global ap_trampoline_start
    .global ap_trampoline_end
    .p2align 3                      /* the quads below stay 8-aligned when copied */
    .code16
ap_trampoline_start:
    cli
    cld
    xorw %ax, %ax
    movw %ax, %ds
    lgdtl {t} + (tr_gdtr - ap_trampoline_start)
    movl %cr0, %eax
    andl $0x9fffffff, %eax          /* the AP comes up with CD/NW set: caches on */
    orl $1, %eax
    movl %eax, %cr0
    ljmpl $0x08, ${t} + (tr_pm - ap_trampoline_start)
    .code32
tr_pm:
    movl $0x10, %eax
    movl %eax, %ds
    movl %eax, %es
    movl %eax, %ss
    movl %cr4, %eax
    orl $0x20, %eax                 /* PAE */
    movl %eax, %cr4
    movl {t} + (tr_cr3 - ap_trampoline_start), %eax
    movl %eax, %cr3
    movl $0xc0000080, %ecx
    rdmsr
    orl $0x100, %eax                /* LME */
    wrmsr
    movl %cr0, %eax
    orl $0x80010001, %eax           /* PG | WP | PE */
    movl %eax, %cr0
    ljmpl $0x18, ${t} + (tr_lm - ap_trampoline_start)
    .code64
tr_lm:
    /* Claim this start: read the ticket, then the parameters it stands for, then take the
       ticket (compare-and-swap to 0). A late AP whose ticket the BSP already withdrew,
       or one that read parameters of a newer ticket, loses the swap and halts for good,
       so two CPUs can never run on one stack or one per-CPU index. */
    movq {t} + (tr_claim - ap_trampoline_start), %rax
    testq %rax, %rax
    jz 2f
    movq {t} + (tr_stack - ap_trampoline_start), %rsp
    movq {t} + (tr_cpu - ap_trampoline_start), %rdi
    movq {t} + (tr_entry - ap_trampoline_start), %rsi
    xorl %edx, %edx
    lock cmpxchgq %rdx, {t} + (tr_claim - ap_trampoline_start)
    jnz 2f
    movabsq $ap_start, %rax         /* linked code, which debuggers can unwind */
    jmpq *%rax
2:  cli
    hlt
    jmp 2b
    .p2align 3
tr_gdt:
    .quad 0
    .quad 0x00cf9a000000ffff        /* 0x08: 32-bit code */
    .quad 0x00cf92000000ffff        /* 0x10: data */
    .quad 0x00af9a000000ffff        /* 0x18: 64-bit code */
tr_gdtr:
    .word 31
    .long {t} + (tr_gdt - ap_trampoline_start)
    .p2align 3
    .global tr_cr3
tr_cr3: .quad 0
tr_stack: .quad 0
tr_cpu: .quad 0
tr_entry: .quad 0
tr_claim: .quad 0
ap_trampoline_end:

    /* Where an AP leaves the trampoline (copied below 1 MiB, where a debugger has no
       symbols) for linked code: the outermost frame of the AP's stack, so a backtrace
       from the entry function ends here. %rdi = CPU index, %rsi = entry. */
    .section .text.ap_start, "ax"
    .code64
ap_start:
    .cfi_startproc
    .cfi_undefined rip
    xorl %ebp, %ebp
    andq $-16, %rsp
    callq *%rsi
    ud2
    .cfi_endproc
    "#,
    t = const TRAMPOLINE,
    options(att_syntax)
);

extern "C" {
    static ap_trampoline_start: u8;
    static ap_trampoline_end: u8;
}

/// Starts the application processors listed in `apic_ids` (the BSP is skipped): copies
/// the start code to 0x8000, then for each AP sets its stack and index and sends
/// INIT, SIPI, SIPI; waits (bounded) until it is online. Returns the number of CPUs.
pub fn start_aps(apic_ids: &[u8], kernel_root: u64, entry: extern "C" fn(u64) -> !) -> usize {
    // Until now one CPU ran the kernel without the lock; take it before anyone else can
    // want it (this CPU drops it when it leaves the kernel).
    lock(0);
    let me = my_apic_id();
    APIC_ID[0].store(me, Ordering::Relaxed);
    let start = core::ptr::addr_of!(ap_trampoline_start) as usize;
    let len = core::ptr::addr_of!(ap_trampoline_end) as usize - start;
    let dst = (PHYS_OFFSET + TRAMPOLINE) as *mut u8;
    // SAFETY: the trampoline page is below 1 MiB, reserved from the frame allocator and
    // unused by the loaders' data (l4vmm: 0x6000-0x7fff and 0x20000+); the source is the
    // assembled code above.
    unsafe { core::ptr::copy_nonoverlapping(start as *const u8, dst, len) };
    let field = |name_off: usize| (PHYS_OFFSET + TRAMPOLINE + name_off as u64) as *mut u64;
    // tr_cr3, tr_stack, tr_cpu, tr_entry, tr_claim are the last five quads.
    let off = len - 40;
    // SAFETY: tr_claim, an aligned quad of the copied trampoline that only this function
    // and the APs' `lock cmpxchg` touch, for as long as the kernel runs.
    let claim = unsafe { AtomicU64::from_ptr(field(off + 32)) };
    let mut n = 1;
    let mut ticket = 0u64;
    for &id in apic_ids.iter().filter(|&&id| u64::from(id) != me).take(MAX_CPUS - 1) {
        APIC_ID[n].store(u64::from(id), Ordering::Relaxed);
        // SAFETY: the parameter quads at the end of the copied trampoline; no AP reads
        // them until the ticket below is published (an AP that reads them for an older,
        // withdrawn ticket loses its claim and halts).
        unsafe {
            field(off).write_volatile(kernel_root);
            field(off + 8).write_volatile(super::percpu::kstack(n));
            field(off + 16).write_volatile(n as u64);
            field(off + 24).write_volatile(entry as u64);
        }
        ticket += 1;
        claim.store(ticket, Ordering::Release);
        let before = ONLINE.load(Ordering::Acquire);
        icr(u64::from(id), 0x4500); // INIT, assert
        for _ in 0..2 {
            icr(u64::from(id), 0x4600 | (TRAMPOLINE >> 12) as u32); // STARTUP
        }
        // Wait by the clock, not by a spin count: how fast a vCPU thread gets to run
        // depends on the host (a nested host with 8 vCPUs on 2 CPUs takes its time).
        let start = cpu::rdtsc();
        while ONLINE.load(Ordering::Acquire) == before && cpu::rdtsc().wrapping_sub(start) < AP_START_CYCLES {
            core::hint::spin_loop();
        }
        if ONLINE.load(Ordering::Acquire) == before {
            if claim.swap(0, Ordering::AcqRel) == ticket {
                // Withdrawn before it claimed it: if it ever runs, it halts.
                crate::kprintln!("l4: cpu with local APIC ID ", id, " did not come up");
                continue;
            }
            // It claimed the start just now and is on its way with index n.
            while ONLINE.load(Ordering::Acquire) == before {
                core::hint::spin_loop();
            }
        }
        n += 1;
    }
    if n > 1 {
        ACTIVE.store(true, Ordering::Release);
    }
    n
}
