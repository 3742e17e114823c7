//! x86_64 under a PVH loader: the boot path, port I/O, the serial console, the exit device,
//! the direct map of physical memory, and the kernel's libc-level memory routines.

mod boot;
pub mod ktest;
mod mem;
pub mod port;
pub mod serial;

use l4_abi::port::EXIT;
use l4_kernel::boot::pvh::PhysMem;

/// Virtual address of the direct map of guest-physical memory (PML4 slot 256).
pub const PHYS_OFFSET: u64 = 0xffff_8000_0000_0000;
/// How much physical memory the boot page tables direct-map (4 GiB).
pub const DIRECT_MAP_SIZE: u64 = 4 << 30;

/// Early platform set-up: the console.
pub fn init_early() {
    serial::init();
}

/// Ends the VM with `code` through the exit device. If there is none (another VMM without
/// it), halts forever with interrupts off.
pub fn exit(code: u8) -> ! {
    port::outb(EXIT, code);
    loop {
        // SAFETY: cli/hlt only stop this CPU; nothing is left half-done because we never
        // return.
        unsafe { core::arch::asm!("cli", "hlt", options(nomem, nostack)) };
    }
}

/// Read access to guest-physical memory through the boot direct map.
pub struct DirectMap;

impl PhysMem<'static> for DirectMap {
    fn bytes(&self, paddr: u64, len: usize) -> Option<&'static [u8]> {
        let end = paddr.checked_add(len as u64)?;
        if end > DIRECT_MAP_SIZE {
            return None;
        }
        // SAFETY: [paddr, end) lies inside the direct map, which the boot page tables map
        // read/write for the kernel's lifetime; the loader's tables are never written by
        // the kernel, so a shared borrow is sound. Addresses above RAM read as the
        // platform's open bus (no fault), so this cannot crash the kernel.
        Some(unsafe { core::slice::from_raw_parts((PHYS_OFFSET + paddr) as *const u8, len) })
    }
}
