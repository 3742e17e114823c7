//! Kernel entry and exit: the IDT, the exception/interrupt stubs, the `syscall` entry and
//! the return to user mode.
//!
//! Every entry from user mode leaves the thread's registers in one frame layout,
//! [`l4_kernel::machine::UserRegs`], inside the thread's TCB: interrupts and exceptions
//! because RSP0 points at the end of that frame (the CPU pushes SS..RIP there, the stub
//! pushes the error code, the vector and the 15 GPRs); `syscall` by building the same
//! frame at the same place. The kernel then runs on its own stack. Exit is always `iretq`
//! from the frame. Entries from kernel mode (the idle loop's timer interrupt, kernel bugs)
//! push the same layout on the kernel stack.
//!
//! Instruction counts matter: on PVM hosts each ring-0 instruction here is emulated.

use core::ptr::addr_of_mut;

use super::gdt::{DescPtr, KERNEL_CS};

/// The vector number the `syscall` entry records in the frame.
pub const SYSCALL_VECTOR: u64 = 0x80;
/// The local APIC timer's vector.
pub const TIMER_VECTOR: u64 = 0x20;
/// The inter-processor interrupt: wake up, look at the run queue, flush the TLB if asked.
/// In a higher priority class (0x3x) than the timer (0x2x).
pub const IPI_VECTOR: u64 = 0x30;
/// The local APIC's spurious vector.
pub const SPURIOUS_VECTOR: u64 = 0xff;

core::arch::global_asm!(
    r#"
    /* The 15 GPRs in UserRegs order (rax pushed first, r15 last). */
    .macro SAVE_GPRS
    pushq %rax
    pushq %rbx
    pushq %rcx
    pushq %rdx
    pushq %rsi
    pushq %rdi
    pushq %rbp
    pushq %r8
    pushq %r9
    pushq %r10
    pushq %r11
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    .endm
    .macro RESTORE_GPRS
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %r11
    popq %r10
    popq %r9
    popq %r8
    popq %rbp
    popq %rdi
    popq %rsi
    popq %rdx
    popq %rcx
    popq %rbx
    popq %rax
    .endm
    .macro ISR_NOERR n
    .global isr_\n
isr_\n:
    pushq $0
    pushq $\n
    jmp isr_common
    .endm
    .macro ISR_ERR n
    .global isr_\n
isr_\n:
    pushq $\n
    jmp isr_common
    .endm

    .section .text.entry, "ax"
    /* Unwind information for debuggers: every kernel entry is an outermost frame (a
       backtrace from a trap handler ends at the stub it came through). */
    .cfi_startproc
    .cfi_undefined rip
    ISR_NOERR 0
    ISR_NOERR 1
    ISR_NOERR 2
    .global isr_3
isr_3:
    /* int3 from user mode at the entry page: a system call (on hosts where `syscall`
       does not enter ring 0). Anything else, a breakpoint in user code or an int3 in
       the kernel, is an ordinary trap. */
    testb $3, 8(%rsp)               /* from user? (CS above RIP) */
    jz 8f
    swapgs
    pushq $0
    pushq $3
    SAVE_GPRS
    cld
    movabsq ${int3_rip}, %rcx       /* RIP after the entry page's int3 (rax: the number) */
    cmpq %rcx, {rip_off}(%rsp)
    je .Lsyscall_common
    jmp .Lisr_user
8:  pushq $0
    pushq $3
    jmp isr_common
    ISR_NOERR 4
    ISR_NOERR 5
    ISR_NOERR 6
    ISR_NOERR 7
    ISR_ERR 8
    ISR_NOERR 9
    ISR_ERR 10
    ISR_ERR 11
    ISR_ERR 12
    ISR_ERR 13
    ISR_ERR 14
    ISR_NOERR 15
    ISR_NOERR 16
    ISR_ERR 17
    ISR_NOERR 18
    ISR_NOERR 19
    ISR_NOERR 20
    ISR_ERR 21
    ISR_NOERR 22
    ISR_NOERR 23
    ISR_NOERR 24
    ISR_NOERR 25
    ISR_NOERR 26
    ISR_NOERR 27
    ISR_NOERR 28
    ISR_ERR 29
    ISR_ERR 30
    ISR_NOERR 31
    ISR_NOERR 32
    ISR_NOERR 48
    ISR_NOERR 255

isr_common:
    testb $3, 24(%rsp)              /* from user? (CS above vector and error code) */
    jz 1f
    swapgs                          /* GS base: this CPU's per-CPU block */
    SAVE_GPRS
    cld
.Lisr_user:
    movq %rsp, %rdi
    movq %gs:{pc_kstack}, %rsp      /* this CPU's kernel stack */
    call trap_from_user             /* never returns */
    ud2
    /* From kernel mode: on a correct CPU only the idle loop's `sti; hlt` (or a kernel
       bug), always with the kernel's GS. A broken host can deliver an interrupt anywhere
       with IF=0 (QEMU's emulated SVM does: docs/HOSTS.md), e.g. between return_to_user's
       swapgs and iretq. So trust GS_BASE, not CS: a user's GS base is 0 (users cannot set
       it), the kernel's is in the top half; swap in, and back out before returning. */
1:  SAVE_GPRS
    cld
    movl ${gs_base}, %ecx
    rdmsr
    xorl %ebx, %ebx
    testl %edx, %edx
    jnz 2f
    swapgs
    incl %ebx
2:  movq %rsp, %rdi
    call trap_from_kernel           /* preserves rbx */
    testl %ebx, %ebx
    jz 3f
    swapgs
3:  RESTORE_GPRS
    addq $16, %rsp
    iretq

    .global syscall_entry
syscall_entry:
    swapgs
    movq %rsp, %gs:{pc_user_rsp}
    movq %gs:{pc_frame_top}, %rsp
    pushq $0x1b                     /* user SS */
    pushq %gs:{pc_user_rsp}
    pushq %r11                      /* user RFLAGS */
    pushq $0x23                     /* user CS */
    pushq %rcx                      /* user RIP */
    pushq $0
    pushq ${sysvec}
    SAVE_GPRS
    /* Both system-call entries: the number is still in rax. */
.Lsyscall_common:
    movq %rsp, %rdi
    movq %gs:{pc_kstack}, %rsp
    cmpq ${sys_null}, %rax
    je 1f
    movq %rax, %rsi
    call syscall_ipc                /* never returns */
1:  call syscall_null               /* never returns */
    ud2

    .global return_to_user
return_to_user:
    movq %rdi, %rsp
    RESTORE_GPRS
    addq $16, %rsp
    swapgs                          /* back to the user's GS base */
    iretq
    .cfi_endproc

    .section .rodata.isr_table, "a"
    .p2align 3
    .global isr_table
isr_table:
    .quad isr_0, isr_1, isr_2, isr_3, isr_4, isr_5, isr_6, isr_7
    .quad isr_8, isr_9, isr_10, isr_11, isr_12, isr_13, isr_14, isr_15
    .quad isr_16, isr_17, isr_18, isr_19, isr_20, isr_21, isr_22, isr_23
    .quad isr_24, isr_25, isr_26, isr_27, isr_28, isr_29, isr_30, isr_31
    .quad isr_32

"#,
    sysvec = const SYSCALL_VECTOR,
    sys_null = const l4_abi::syscall::Sysno::Null as u64,
    pc_user_rsp = const super::percpu::USER_RSP,
    pc_frame_top = const super::percpu::FRAME_TOP,
    pc_kstack = const super::percpu::KSTACK,
    gs_base = const super::percpu::IA32_GS_BASE,
    int3_rip = const l4_abi::syscall::ENTRY_VA + 1,
    rip_off = const core::mem::offset_of!(l4_kernel::machine::UserRegs, rip),
    options(att_syntax)
);

extern "C" {
    static isr_table: [u64; 33];
    static isr_255: u8;
    static isr_48: u8;
    static syscall_entry: u8;
    /// Restores the registers in `frame` and returns to user mode.
    pub fn return_to_user(frame: *const l4_kernel::machine::UserRegs) -> !;
}

#[repr(C)]
#[derive(Clone, Copy)]
struct Gate {
    offset_lo: u16,
    selector: u16,
    ist: u8,
    attr: u8,
    offset_mid: u16,
    offset_hi: u32,
    _zero: u32,
}

static mut IDT: [Gate; 256] =
    [Gate { offset_lo: 0, selector: 0, ist: 0, attr: 0, offset_mid: 0, offset_hi: 0, _zero: 0 }; 256];

fn gate(handler: u64, dpl3: bool, ist: u8) -> Gate {
    Gate {
        offset_lo: handler as u16,
        selector: KERNEL_CS,
        ist,
        attr: if dpl3 { 0xee } else { 0x8e },
        offset_mid: (handler >> 16) as u16,
        offset_hi: (handler >> 32) as u32,
        _zero: 0,
    }
}

/// Fills and loads the IDT. Vector 3 (`int3`) is callable from user mode: it is the kernel
/// entry on hosts where `syscall` does not enter ring 0. Double faults and NMIs use IST1.
pub fn init() {
    // SAFETY: runs once at boot with interrupts off; the table and stubs are statics that
    // live forever, so the descriptors stay valid.
    unsafe {
        let idt = addr_of_mut!(IDT);
        let table = &*core::ptr::addr_of!(isr_table);
        for (v, &h) in table.iter().enumerate() {
            let ist = if v == 2 || v == 8 { 1 } else { 0 };
            (*idt)[v] = gate(h, v == 3, ist);
        }
        (*idt)[IPI_VECTOR as usize] = gate(core::ptr::addr_of!(isr_48) as u64, false, 0);
        let spurious = gate(core::ptr::addr_of!(isr_255) as u64, false, 0);
        (*idt)[SPURIOUS_VECTOR as usize] = spurious;
        // The remapped, masked legacy PICs can still raise spurious IRQs 7 and 15.
        for v in super::pic::BASE as usize..super::pic::BASE as usize + 16 {
            (*idt)[v] = spurious;
        }
    }
    load_idt();
}

/// Loads the (shared) IDT on this CPU.
pub fn load_idt() {
    let ptr = DescPtr { limit: (core::mem::size_of::<[Gate; 256]>() - 1) as u16, base: addr_of_mut!(IDT) as u64 };
    // SAFETY: the IDT is a static filled by `init` before any CPU loads it.
    unsafe { core::arch::asm!("lidt [{}]", in(reg) &ptr, options(nostack)) };
}

/// The address `syscall` jumps to (LSTAR).
pub fn syscall_entry_addr() -> u64 {
    core::ptr::addr_of!(syscall_entry) as u64
}

/// Where this CPU's next user entry's frame ends: the `syscall` entry builds its frame
/// below it, interrupts and exceptions use the TSS's RSP0, set alongside.
#[inline(always)]
pub fn set_frame_top(top: u64) {
    super::percpu::set_frame_top(top);
}
