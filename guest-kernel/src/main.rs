//! The l4 kernel binary: the x86_64 platform layer (`arch/`) around the portable logic in
//! the `l4_kernel` library.
//!
//! Boot sequence: a PVH loader (l4vmm or QEMU) enters `pvh_start` (arch/x86_64/boot.rs) in
//! 32-bit protected mode with paging off; it switches to long mode on page tables that are
//! prebuilt in the image and calls [`kernel_main`], which brings up the console, validates
//! the start info and prints the banner.
#![no_std]
#![no_main]

mod arch;
mod console;
mod ktest;
mod panic;

use core::sync::atomic::{AtomicU64, Ordering};

use l4_abi::exit;
use l4_kernel::boot::cmdline::Cmdline;
use l4_kernel::boot::pvh::{self, BootInfo, MemType};
use l4_kernel::boot::{acpi, cpio};
use l4_kernel::mm::frames::{self, Range};

use crate::console::Hex;

/// How far boot has got: 1 = console up, 2 = banner printed, 3 = boot complete. Exported
/// unmangled so a debugger can watch it (`watch BOOT_STAGE`, `x/4gx &BOOT_STAGE`).
#[no_mangle]
pub static BOOT_STAGE: AtomicU64 = AtomicU64::new(0);

/// The Rust entry point, called once by the boot code on the boot stack.
///
/// `start_info` is the guest-physical address of the PVH `hvm_start_info` (from `%ebx`).
#[no_mangle]
pub extern "C" fn kernel_main(start_info: u64) -> ! {
    arch::init_early();
    BOOT_STAGE.store(1, Ordering::Relaxed);
    let mem = arch::DirectMap;
    let info = match BootInfo::parse(&mem, start_info) {
        Ok(info) => info,
        Err(e) => {
            kprintln!("l4: unusable PVH start info at ", Hex(start_info), ": ", console::Debug(&e));
            arch::exit(exit::FAILURE);
        }
    };
    banner(&info, start_info);
    BOOT_STAGE.store(2, Ordering::Relaxed);

    let cmdline = Cmdline::new(info.cmdline());
    if let Some(test) = cmdline.get("ktest") {
        ktest::run(test);
    }
    if info.module_count() == 0 {
        BOOT_STAGE.store(3, Ordering::Relaxed);
        kprintln!("l4: no boot modules: nothing to run");
        kprintln!("l4: boot complete");
        arch::exit(exit::SUCCESS);
    }
    start_user_space(&info, &cmdline)
}

/// Takes over memory, registers the boot files, picks the user entry mechanism and starts
/// the root task.
fn start_user_space(info: &BootInfo<'static>, cmdline: &Cmdline<'_>) -> ! {
    arch::init_cpu();
    arch::probe_machine();
    // SAFETY: boot, interrupts off; the references end before choose_entry.
    let (k, m) = unsafe { arch::trap::state() };

    // Usable frames: RAM below the direct map's end, minus the first MiB (boot data), the
    // kernel image and the modules.
    let mut ram = [Range::default(); 32];
    let mut nram = 0;
    for r in info.memmap() {
        if r.kind == MemType::Ram && nram < ram.len() && r.base < arch::DIRECT_MAP_SIZE {
            ram[nram] = Range { start: r.base, end: r.end().min(arch::DIRECT_MAP_SIZE) };
            nram += 1;
        }
    }
    let mut reserved = [Range::default(); 2 + pvh::MAX_MODULES];
    let (ks, ke) = arch::kernel_image();
    reserved[0] = Range { start: 0, end: 0x10_0000 };
    reserved[1] = Range { start: ks, end: ke };
    let mut nres = 2;
    for m in info.modules(&arch::DirectMap) {
        reserved[nres] = Range { start: m.paddr, end: m.paddr.saturating_add(m.size) };
        nres += 1;
    }
    let (usable, nusable) = frames::usable_ranges(&ram[..nram], &reserved[..nres]);
    if let Err(e) = k.init(m, &usable[..nusable], arch::kernel_root(), &[0xcc, 0xc3]) {
        kprintln!("l4: no memory for the kernel: ", e.name());
        arch::exit(exit::FAILURE);
    }

    // Boot files: each module is an ELF, or a cpio archive of them.
    for md in info.modules(&arch::DirectMap) {
        let Some(bytes) = l4_kernel::platform::Platform::phys_slice(m, md.paddr, md.size) else { continue };
        if cpio::is_cpio(bytes) {
            for e in cpio::entries(bytes) {
                let pa = md.paddr + (e.data.as_ptr() as u64 - bytes.as_ptr() as u64);
                k.add_boot_file(pa, e.data.len() as u64, e.name);
            }
        } else {
            k.add_boot_file(md.paddr, md.size, md.cmdline);
        }
    }
    kprintln!(
        "l4: ",
        k.nboot_files,
        " boot files; frames: ",
        k.frames.total(),
        " total, ",
        k.frames.used(),
        " used, ",
        k.frames.free(),
        " free"
    );
    for i in 0..k.nboot_files {
        let f = &k.boot_files[i];
        let n = f.name.iter().position(|&b| b == 0).unwrap_or(f.name.len());
        kprintln!("  boot file ", i, ": '", console::Bytes(&f.name[..n]), "' ", f.size, " bytes");
    }
    // SAFETY: boot, single CPU; read once by start_root.
    unsafe { ROOT_CMDLINE = info.cmdline() };
    let forced = match cmdline.get("entry") {
        Some("syscall") => Some(arch::trap::EntryMode::Syscall),
        Some("int3") => Some(arch::trap::EntryMode::Int3),
        _ => None,
    };
    arch::trap::choose_entry(forced, start_root)
}

/// The CPUs from the MADT, started once the root task exists.
static mut CPUS: Option<acpi::Cpus> = None;

/// The kernel command line, handed to the root task.
static mut ROOT_CMDLINE: &[u8] = &[];

/// Runs in trap context once the entry mechanism is known.
fn start_root() {
    // SAFETY: trap context, interrupts off.
    let (k, m) = unsafe { arch::trap::state() };
    // SAFETY: the boot info was validated at boot and lives in loader memory that nothing
    // writes; its command line is a plain byte range.
    let cmdline = unsafe { ROOT_CMDLINE };
    match k.spawn_root(m, ROOT_PRIORITY, cmdline) {
        Ok(t) => kprintln!("l4: root task '", console::Bytes(k.tasks[t].name()), "' started"),
        Err(e) => {
            kprintln!("l4: cannot start the root task: ", e.name());
            arch::exit(exit::FAILURE);
        }
    }
    BOOT_STAGE.store(3, Ordering::Relaxed);
    // SAFETY: written once at boot.
    if let Some(c) = unsafe { CPUS } {
        if c.count > 1 {
            // From here on the kernel keeps each CPU's current thread in `currents`.
            k.leave_cpu();
            let n = arch::start_aps(&c.apic_ids[..c.count]);
            k.cpus = n;
            m.cpus = n;
            kprintln!("l4: ", n, " cpus online");
        }
    }
    arch::start_timer();
}

/// The root task's priority; servers it starts run at or below it.
const ROOT_PRIORITY: usize = 20;

/// Prints what the kernel was given. The same kernel prints the same banner under l4vmm
/// and under QEMU; only the values differ.
fn banner(info: &BootInfo<'static>, start_info: u64) {
    kprintln!("l4 kernel ", env!("CARGO_PKG_VERSION"), " (x86_64), booted via PVH, start info at ", Hex(start_info));
    let mut ram = 0u64;
    kprintln!("memory map:");
    for r in info.memmap() {
        if r.size == 0 {
            continue;
        }
        kprintln!("  [", Hex(r.base), "-", Hex(r.end() - 1), "] ", r.kind.name(), " (", r.size / 1024, " KiB)");
        if r.kind == l4_kernel::boot::pvh::MemType::Ram {
            ram = ram.saturating_add(r.size);
        }
    }
    kprintln!("usable RAM: ", ram / 1024, " KiB");
    kprintln!("modules: ", info.module_count());
    for (i, m) in info.modules(&arch::DirectMap).enumerate() {
        kprintln!(
            "  ",
            i,
            ": [",
            Hex(m.paddr),
            "-",
            Hex(m.paddr.saturating_add(m.size).saturating_sub(1)),
            "] ",
            m.size,
            " bytes '",
            console::Bytes(m.cmdline),
            "'"
        );
    }
    kprintln!("cmdline: '", console::Bytes(info.cmdline()), "'");
    match acpi::find_rsdp(&arch::DirectMap, info.rsdp_paddr).and_then(|r| acpi::cpus(&arch::DirectMap, r)) {
        Some(c) => {
            // SAFETY: boot, single CPU; read once by start_root.
            unsafe { CPUS = Some(c) };
            kprint!("cpus: ", c.count, " (local APIC IDs");
            for id in &c.apic_ids[..c.count] {
                kprint!(" ", *id);
            }
            kprintln!(")");
        }
        None => kprintln!("cpus: 1 (no ACPI MADT)"),
    }
}
