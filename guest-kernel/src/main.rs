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
use l4_kernel::boot::pvh::BootInfo;

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
    BOOT_STAGE.store(3, Ordering::Relaxed);
    kprintln!("l4: boot complete");
    arch::exit(exit::SUCCESS)
}

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
}
