//! Control registers, MSRs and the few privileged instructions the kernel uses.

pub const IA32_EFER: u32 = 0xc000_0080;
pub const IA32_STAR: u32 = 0xc000_0081;
pub const IA32_LSTAR: u32 = 0xc000_0082;
pub const IA32_FMASK: u32 = 0xc000_0084;

pub fn rdmsr(msr: u32) -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: reads an architectural MSR the kernel owns.
    unsafe { core::arch::asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nomem, nostack)) };
    (u64::from(hi) << 32) | u64::from(lo)
}

pub fn wrmsr(msr: u32, value: u64) {
    // SAFETY: writes an architectural MSR the kernel owns; callers pass valid values.
    unsafe {
        core::arch::asm!("wrmsr", in("ecx") msr, in("eax") value as u32, in("edx") (value >> 32) as u32, options(nomem, nostack))
    };
}

/// The time-stamp counter (a clock for bounded waits; never for anything else).
pub fn rdtsc() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: rdtsc only reads the counter (CR4.TSD is clear).
    unsafe { core::arch::asm!("rdtsc", out("eax") lo, out("edx") hi, options(nomem, nostack)) };
    (u64::from(hi) << 32) | u64::from(lo)
}

pub fn cr2() -> u64 {
    let v;
    // SAFETY: reading CR2 has no side effects.
    unsafe { core::arch::asm!("mov {}, cr2", out(reg) v, options(nomem, nostack)) };
    v
}

pub fn cr3() -> u64 {
    let v;
    // SAFETY: reading CR3 has no side effects.
    unsafe { core::arch::asm!("mov {}, cr3", out(reg) v, options(nomem, nostack)) };
    v
}

/// Switches address space.
///
/// # Safety
/// `root` must be a PML4 whose kernel half maps the kernel (every address space made by
/// `vspace::new_root` does).
pub unsafe fn set_cr3(root: u64) {
    // SAFETY: upheld by the caller.
    unsafe { core::arch::asm!("mov cr3, {}", in(reg) root, options(nostack)) };
}

pub fn invlpg(va: u64) {
    // SAFETY: dropping a TLB entry is always safe.
    unsafe { core::arch::asm!("invlpg [{}]", in(reg) va, options(nostack)) };
}

/// Lets ring 3 use x87/SSE: CR0.MP on, CR0.EM and TS off, CR4.OSFXSR and OSXMMEXCPT on.
/// The kernel itself never executes SSE arithmetic (checked by tests/kernel_image.rs).
pub fn enable_user_fpu() {
    // SAFETY: only FPU-related bits change; nothing in the kernel depends on them.
    unsafe {
        core::arch::asm!(
            "mov {t}, cr0",
            "and {t}, ~0xc",            // EM, TS off
            "or {t}, 0x2",              // MP on
            "mov cr0, {t}",
            "mov {t}, cr4",
            "or {t}, 0x600",            // OSFXSR | OSXMMEXCPT
            "mov cr4, {t}",
            t = out(reg) _,
            options(nostack)
        );
    }
}

/// Saves the x87/SSE state into `area` (512 bytes, 16-byte aligned).
pub fn fxsave(area: *mut l4_kernel::machine::FpuState) {
    // SAFETY: `area` points at a live, aligned FXSAVE area (a thread's `fpu`).
    unsafe { core::arch::asm!("fxsave64 [{}]", in(reg) area, options(nostack)) };
}

/// Loads the x87/SSE state from `area`.
pub fn fxrstor(area: *const l4_kernel::machine::FpuState) {
    // SAFETY: `area` points at a live, aligned FXSAVE area with a valid image (the reset
    // image or one written by fxsave).
    unsafe { core::arch::asm!("fxrstor64 [{}]", in(reg) area, options(nostack)) };
}

/// Waits for an interrupt with interrupts enabled, then disables them again.
pub fn idle_wait() {
    // SAFETY: the only place the kernel enables interrupts; the handler runs on the kernel
    // stack below this frame and returns here.
    unsafe { core::arch::asm!("sti", "hlt", "cli", options(nostack)) };
}
