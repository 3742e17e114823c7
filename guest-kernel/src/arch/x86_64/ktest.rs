//! The machine-level halves of `crate::ktest`.

use crate::console::Hex;

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

/// Unbacked guest-physical memory for the MMIO accesses (neither RAM nor a device).
const NO_DEVICE: u64 = 0xc000_0000;

/// A hostile guest, for l4vmm's robustness tests: reads and writes garbage on every I/O
/// port (except the exit device), garbage to the UART's registers (then sets it up
/// again), frame numbers outside RAM to the zeroing device, unknown trace markers,
/// MMIO reads and writes where nothing is mapped, and a flood of exits. Ends with exit 0:
/// l4vmm must still be there to see it.
pub fn hostile() -> ! {
    use super::port::{inb, inl, outb, outl};
    use l4_abi::port::{COM1, EXIT, ZERO};
    let mut sum = 0u64;
    for port in 0..=u16::MAX {
        if port == EXIT {
            continue;
        }
        outb(port, 0xa5);
        sum = sum.wrapping_add(u64::from(inb(port)));
    }
    for reg in 0..8 {
        for v in [0x00, 0x80, 0xff, 0x5a] {
            outb(COM1 + reg, v);
            sum = sum.wrapping_add(u64::from(inb(COM1 + reg)));
        }
    }
    super::serial::init();
    crate::kprintln!("l4: hostile: every port written and read; the UART set up again");
    for pfn in [u32::MAX, 0x10_0000, 0xc_0000] {
        outl(ZERO, pfn);
    }
    sum = sum.wrapping_add(u64::from(inl(0x1234)));
    let mut mmio = 0u64;
    for page in 0..256u64 {
        let p = (super::PHYS_OFFSET + NO_DEVICE + page * 4096) as *mut u64;
        // SAFETY: the boot page tables map all of the first 4 GiB through the direct map;
        // nothing backs this range, so KVM turns each access into an MMIO exit that
        // l4vmm must answer (reads as all-ones); no Rust object lives there.
        unsafe {
            p.write_volatile(0xdead_beef_dead_beef);
            mmio = mmio.wrapping_add(p.read_volatile());
        }
    }
    crate::kprintln!("l4: hostile: 256 MMIO writes and reads where nothing is mapped, read ", Hex(mmio));
    for _ in 0..100_000 {
        outb(0x80, 0);
    }
    crate::kprintln!("l4: hostile: 100000 exits in a row; checksum ", sum, "; done");
    super::exit(0)
}

/// Two pages for `ktest=straddle`: an 8-byte write across the boundary between them is
/// two MMIO fragments when a debugger traps both pages (a watchpoint on those bytes).
/// Unmangled, so a test's gdb finds it.
#[repr(C, align(4096))]
pub struct TwoPages([u64; 1024]);
#[no_mangle]
pub static mut KTEST_STRADDLE: TwoPages = TwoPages([0; 1024]);

/// `ktest=straddle`: one 8-byte write across a page boundary, read back; exit 0 if all
/// eight bytes arrived, else FAILURE.
pub fn straddle() -> ! {
    const VALUE: u64 = 0x1122_3344_5566_7788;
    // SAFETY: only this boot-time test touches the static; bytes 4092..4100 lie inside it.
    let p = unsafe { (core::ptr::addr_of_mut!(KTEST_STRADDLE) as *mut u8).add(4092) };
    let back: u64;
    // SAFETY: one unaligned 8-byte store and load at `p` (inside the static), as single
    // instructions, so that the store is one access across the boundary.
    unsafe {
        core::arch::asm!(
            "mov qword ptr [{p}], {v}",
            "mov {b}, qword ptr [{p}]",
            p = in(reg) p,
            v = in(reg) VALUE,
            b = lateout(reg) back,
            options(nostack)
        );
    }
    let ok = back == VALUE;
    crate::kprintln!("l4: ktest=straddle: wrote ", Hex(VALUE), " across a page boundary, read back ", Hex(back));
    super::exit(if ok { 0 } else { l4_abi::exit::FAILURE })
}

/// Writes to a port without a device, for ever, as fast as the vCPU can.
pub fn flood() -> ! {
    loop {
        super::port::outb(0x80, 0);
    }
}

/// `ktest=irq-mask`: see the kernel's ktest module. 2,000 rounds of 200 VM exits (port
/// 0x80 writes, which no device serves) with interrupts off, each followed by a short
/// bounded window with interrupts on (a spin, not `hlt`: on a host that loses timer
/// interrupts the test must still end); the timer fires every 100 µs.
pub fn irq_mask() -> ! {
    use core::sync::atomic::Ordering;
    super::apic::start_timer(100_000);
    for _ in 0..2_000 {
        for _ in 0..200 {
            super::port::outb(0x80, 0);
        }
        // SAFETY: a short window with interrupts on, on the boot stack; the handler
        // returns here.
        unsafe {
            core::arch::asm!(
                "sti",
                "mov {n:e}, 2000",
                "2: dec {n:e}",
                "jnz 2b",
                "cli",
                n = out(reg) _,
                options(nostack)
            )
        };
    }
    super::apic::mask_timer(true);
    let n = super::irqstats::KERNEL_IRQS.load(Ordering::Relaxed);
    let bad = super::irqstats::IF0_IRQS.load(Ordering::Relaxed);
    crate::kprintln!("l4: ktest=irq-mask: ", n, " interrupts, ", bad, " of them with interrupts disabled");
    // Exit 0 only on a host that keeps x86's interrupt flag.
    super::exit(if bad == 0 { l4_abi::exit::SUCCESS } else { l4_abi::exit::HOST_FAULT })
}

/// Written with 1 just before [`steps`] runs its instructions and with 2 just before its
/// exit: places for a debugger's write watchpoint (page trapping serves it on every host),
/// from where it single-steps.
#[used]
pub static STEPS_MARK: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// One of each instruction kind a kernel developer steps over, for the gdb tests: `cpuid`,
/// `rdmsr`/`wrmsr`, a CR3 reload, `sti; hlt` woken by the timer, a faulting `ud2` (the #UD
/// handler skips it, see [`steps_fault_fixup`]), and the exit device's `out` (exit 0).
pub fn steps() -> ! {
    super::start_timer();
    STEPS_MARK.store(1, core::sync::atomic::Ordering::SeqCst);
    unsafe extern "C" {
        fn ktest_steps_body();
    }
    // SAFETY: cpuid, the KERNEL_GS_BASE MSR written back with the value just read, CR3
    // reloaded with itself (a TLB flush), and a #UD that the handler resumes after; the
    // interrupt window is the idle loop's (`sti; hlt`), whose timer interrupt the kernel
    // handles. The body keeps the C ABI (rbx saved; rax, rcx, rdx are caller-saved).
    unsafe { ktest_steps_body() };
    // Interrupts are off again: a second watch stops here, and steps from here reach
    // the exit device's `out` without a timer interrupt in between.
    STEPS_MARK.store(2, core::sync::atomic::Ordering::SeqCst);
    super::exit(0)
}

core::arch::global_asm!(
    ".pushsection .text.ktest_steps, \"ax\"",
    ".global ktest_steps_body",
    "ktest_steps_body:",
    ".cfi_startproc",
    "push rbx",
    ".cfi_adjust_cfa_offset 8",
    ".cfi_offset rbx, -16",
    "xor eax, eax",
    "cpuid",
    "pop rbx",
    ".cfi_adjust_cfa_offset -8",
    ".cfi_restore rbx",
    "mov ecx, 0xc0000102",
    "rdmsr",
    "wrmsr",
    "mov rax, cr3",
    "mov cr3, rax",
    "sti",
    ".global ktest_steps_hlt",
    "ktest_steps_hlt:",
    "hlt",
    "cli",
    // Last: where a step over a fault runs the whole handler (hardware KVM), it ends in
    // the nops, not past the other instructions.
    ".global ktest_steps_ud2",
    "ktest_steps_ud2:",
    "ud2",
    "nop",
    "nop",
    "ret",
    ".cfi_endproc",
    ".size ktest_steps_body, . - ktest_steps_body",
    ".type ktest_steps_body, @function",
    ".popsection",
);

/// The #UD handler's one recovery: the deliberate `ud2` in [`steps`] resumes after itself.
/// Whether `rip` was that instruction (then `rip` now points past it).
pub fn steps_fault_fixup(rip: &mut u64) -> bool {
    unsafe extern "C" {
        static ktest_steps_ud2: u8;
    }
    if *rip != (&raw const ktest_steps_ud2) as u64 {
        return false;
    }
    *rip += 2;
    true
}

/// `ktest=copy`: first checks the kernel's `memcpy` and `memset` (every length 0-40 at
/// every alignment: the bytes asked for and no other), then measures how long a 4 KiB copy
/// takes in ring 0 on this host with each way of writing it (`rep movsb`, `rep movsq`, a
/// loop of 8-byte moves): the least TSC cycles of 16 runs each, printed. What the
/// kernel's bulk copies use was chosen from this (docs/DECISIONS.md, "Bulk copies move 8
/// bytes at a time"). Exit 0, or 1 if a check failed.
pub fn copy() -> ! {
    if let Err(what) = check_mem() {
        crate::kprintln!("l4: ktest=copy: ", what, " is wrong");
        super::exit(l4_abi::exit::FAILURE);
    }
    crate::kprintln!("l4: ktest=copy: memcpy and memset checked");
    #[repr(C, align(4096))]
    struct Page([u8; 4096]);
    static mut SRC: Page = Page([0x5a; 4096]);
    static mut DST: Page = Page([0; 4096]);
    let (src, dst) = (core::ptr::addr_of!(SRC) as *const u8, core::ptr::addr_of_mut!(DST) as *mut u8);
    let time = |f: &dyn Fn()| {
        let mut best = u64::MAX;
        for _ in 0..16 {
            let t = super::cpu::rdtsc();
            f();
            best = best.min(super::cpu::rdtsc().wrapping_sub(t));
        }
        best
    };
    // SAFETY (each): two distinct 4 KiB statics, only this code touches them; DF is clear.
    let movsb = time(&|| unsafe {
        core::arch::asm!("rep movsb", inout("rdi") dst => _, inout("rsi") src => _, inout("rcx") 4096usize => _,
            options(nostack, preserves_flags))
    });
    let movsq = time(&|| unsafe {
        core::arch::asm!("rep movsq", inout("rdi") dst => _, inout("rsi") src => _, inout("rcx") 512usize => _,
            options(nostack, preserves_flags))
    });
    let moves = time(&|| unsafe {
        core::arch::asm!(
            "2: mov {t}, [{s}]",
            "mov [{d}], {t}",
            "add {s}, 8",
            "add {d}, 8",
            "dec {n:e}",
            "jnz 2b",
            s = inout(reg) src => _,
            d = inout(reg) dst => _,
            n = inout(reg) 512usize => _,
            t = out(reg) _,
            options(nostack)
        )
    });
    crate::kprintln!(
        "l4: ktest=copy: 4 KiB in TSC cycles: rep movsb ",
        movsb,
        ", rep movsq ",
        movsq,
        ", 8-byte loop ",
        moves
    );
    super::exit(l4_abi::exit::SUCCESS)
}

/// `memcpy` and `memset` (the kernel's, in `mem`) at every length 0-40 and alignment 0-7
/// of either side: the bytes asked for change, the ones around them do not.
fn check_mem() -> Result<(), &'static str> {
    let mut src = [0u8; 64];
    for (i, b) in src.iter_mut().enumerate() {
        *b = i as u8 ^ 0xa5;
    }
    for n in 0..=40 {
        for (so, d_o) in (0..8).flat_map(|a| (0..8).map(move |b| (a, b))) {
            let mut dst = [0x11u8; 64];
            // SAFETY: both ranges lie inside their arrays (offset < 8, n <= 40, 48 < 64);
            // two arrays, so no overlap.
            unsafe { super::mem::memcpy(dst.as_mut_ptr().add(d_o), src.as_ptr().add(so), n) };
            let ok = dst.iter().enumerate().all(|(i, &b)| {
                if (d_o..d_o + n).contains(&i) {
                    b == src[i - d_o + so]
                } else {
                    b == 0x11
                }
            });
            if !ok {
                return Err("memcpy");
            }
        }
        for off in 0..8 {
            let mut dst = [0x11u8; 64];
            // SAFETY: inside the array (off < 8, n <= 40).
            unsafe { super::mem::memset(dst.as_mut_ptr().add(off), 0x1c3, n) };
            if !dst.iter().enumerate().all(|(i, &b)| b == if (off..off + n).contains(&i) { 0xc3 } else { 0x11 }) {
                return Err("memset");
            }
        }
    }
    Ok(())
}
