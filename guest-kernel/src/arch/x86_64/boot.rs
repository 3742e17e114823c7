//! The PVH entry: from 32-bit protected mode to Rust in long mode.
//!
//! Contract with the loader (PVH, as l4vmm and QEMU implement it): 32-bit protected mode,
//! paging off, flat CS/DS, `%ebx` = physical address of `hvm_start_info`; the image loaded
//! at its `p_paddr`s with `.bss` zeroed (l4vmm's guest RAM is a fresh anonymous mapping,
//! QEMU's ELF loader zero-fills `p_memsz`), so the kernel zeroes nothing itself.
//!
//! The page tables are prebuilt in the image (`.boot.data`), not computed at boot: on PVM
//! hosts every ring-0 instruction is emulated and costs ~1 µs, so building 4 GiB of tables
//! in a loop would take tens of milliseconds. They map, with 2 MiB pages:
//! - 0..4 GiB identity (needed while switching modes; dropped once user space exists),
//! - 0..4 GiB at `PHYS_OFFSET` (the direct map),
//! - 0..1 GiB at `KERNEL_VMA` (where the kernel is linked),
//!
//! with 0xfe00_0000..4 GiB (IOAPIC, local APIC) uncached.
//!
//! The first instruction writes [`l4_abi::port::Marker::KernelEntry`] to the marker port so
//! the VMM can time the boot.

core::arch::global_asm!(
    r#"
    .section .note.Xen, "a"
    .p2align 2
    .long 4                 /* namesz: "Xen\0" */
    .long 4                 /* descsz */
    .long 18                /* XEN_ELFNOTE_PHYS32_ENTRY */
    .asciz "Xen"
    .long pvh_start

    .section .boot.text, "ax"
    .code32
    .global pvh_start
pvh_start:
    /* Unwind information for debuggers: the boot code is the outermost frame (no return
       address), so a backtrace from kernel_main ends in boot_long, its 64-bit half. (DWARF
       register 16 is rip.) */
    .cfi_startproc
    .cfi_undefined 16
    movb ${marker}, %al
    outb %al, ${marker_port}
    cli
    movl %ebx, %edi                 /* start info -> first argument of kernel_main */
    lgdt boot_gdtr
    movl %cr4, %eax
    orl $0x20, %eax                 /* CR4.PAE */
    movl %eax, %cr4
    movl $boot_pml4, %eax
    movl %eax, %cr3
    movl $0xc0000080, %ecx          /* IA32_EFER */
    rdmsr
    orl $0x100, %eax                /* EFER.LME */
    wrmsr
    movl %cr0, %eax
    andl $0x9fffffff, %eax          /* clear CD, NW: caches on */
    orl $0x80010001, %eax           /* PG | WP | PE */
    movl %eax, %cr0
    ljmpl $0x08, $boot_long

    .code64
boot_long:
    movl $0x10, %eax
    movl %eax, %ds
    movl %eax, %es
    movl %eax, %ss
    xorl %eax, %eax
    movl %eax, %fs
    movl %eax, %gs
    movabsq $boot_stack_top, %rsp
    movabsq $kernel_main, %rax
    callq *%rax
2:  cli
    hlt
    jmp 2b
    .cfi_endproc

    .section .boot.data, "aw"
    .p2align 3
boot_gdt:
    .quad 0
    .quad 0x00af9a000000ffff        /* 0x08: 64-bit code, DPL 0 */
    .quad 0x00cf92000000ffff        /* 0x10: data, DPL 0 */
boot_gdt_end:
boot_gdtr:
    .word boot_gdt_end - boot_gdt - 1
    .long boot_gdt

    .p2align 12
    .global boot_pml4
boot_pml4:
    .quad boot_pdpt + 3             /* 0: identity */
    .fill 255, 8, 0
    .quad boot_pdpt + 3             /* 256: direct map at PHYS_OFFSET */
    .fill 254, 8, 0
    .quad boot_pdpt_high + 3        /* 511: kernel image */
boot_pdpt:
    .quad boot_pd + 3
    .quad boot_pd + 0x1000 + 3
    .quad boot_pd + 0x2000 + 3
    .quad boot_pd + 0x3000 + 3
    .fill 508, 8, 0
boot_pdpt_high:
    .fill 510, 8, 0
    .quad boot_pd + 3               /* 510: 0xffffffff80000000 -> physical 0 */
    .quad 0
boot_pd:
    .set i, 0
    .rept 2032
    .quad (i << 21) | 0x83          /* present, writable, 2 MiB */
    .set i, i + 1
    .endr
    .rept 16
    .quad (i << 21) | 0x9b          /* ... and uncached (PCD | PWT) */
    .set i, i + 1
    .endr

    .section .bss.boot_stack, "aw", @nobits
    .p2align 12
boot_stack_bottom:
    .skip 16384
boot_stack_top:
    "#,
    marker = const l4_abi::port::Marker::KernelEntry as u8,
    marker_port = const l4_abi::port::MARKER,
    options(att_syntax)
);
