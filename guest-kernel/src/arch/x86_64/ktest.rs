//! The machine-level halves of `crate::ktest`.

/// Loads an empty IDT and raises #UD: no handler can be found, so the CPU escalates to a
/// double fault and then a triple fault (shutdown).
pub fn triple_fault() -> ! {
    let idtr = [0u16; 5];
    // SAFETY: deliberately brings the VM down; nothing runs after this.
    unsafe { core::arch::asm!("lidt [{}]", "ud2", in(reg) &idtr, options(noreturn)) }
}

/// Jumps to 3 GiB: identity-mapped by the boot page tables, but neither RAM nor a device.
pub fn bad_fetch() -> ! {
    // SAFETY: deliberately brings the VM down; nothing runs after this.
    unsafe { core::arch::asm!("jmp {}", in(reg) 0xc000_0000u64, options(noreturn)) }
}

/// Spins forever with interrupts off.
pub fn spin() -> ! {
    // SAFETY: cli only masks interrupts on this CPU; the loop never returns.
    unsafe { core::arch::asm!("cli", "2:", "jmp 2b", options(noreturn)) }
}

/// Halts forever with interrupts off.
pub fn hang() -> ! {
    // SAFETY: as for `spin`.
    unsafe { core::arch::asm!("cli", "2:", "hlt", "jmp 2b", options(noreturn)) }
}

/// Reads unmapped kernel-half memory (the direct map ends at 4 GiB).
pub fn kernel_page_fault() -> ! {
    let p = (super::PHYS_OFFSET + super::DIRECT_MAP_SIZE + 0x1000) as *const u64;
    // SAFETY: deliberately not: this read page-faults in ring 0, which is the point.
    let v = unsafe { p.read_volatile() };
    crate::kprintln!("l4: read ", v, " from unmapped memory (must not happen)");
    super::exit(l4_abi::exit::FAILURE)
}
