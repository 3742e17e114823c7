//! x86_64 under a PVH loader: the boot path, port I/O, the serial console, the exit device,
//! the direct map of physical memory, and the kernel's libc-level memory routines.

pub(crate) mod apic;
mod boot;
mod count;
mod cpu;
mod entry;
mod gdt;
mod irqstats;
pub mod ktest;
mod mem;
pub mod percpu;
mod pic;
mod platform;
pub mod port;
pub mod serial;
pub mod smp;
pub mod trap;

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

/// The boot CPU's set-up for running user code: per-CPU block, GDT and TSS, IDT, the
/// legacy PICs off, x87/SSE for ring 3.
pub fn init_cpu() {
    percpu::init(0);
    gdt::init(0);
    entry::init();
    pic::disable();
    cpu::enable_user_fpu();
    apic::enable();
    smp::set_kernel_root(kernel_root());
}

/// Starts the other CPUs (`apic_ids` from the MADT); returns how many CPUs run.
pub fn start_aps(apic_ids: &[u8]) -> usize {
    smp::start_aps(apic_ids, kernel_root(), ap_main)
}

/// An application processor's first Rust code (from the trampoline), on its own stack.
extern "C" fn ap_main(cpu: u64) -> ! {
    let cpu = cpu as usize;
    percpu::init(cpu);
    gdt::init(cpu);
    entry::load_idt();
    cpu::enable_user_fpu();
    trap::setup_syscall_msrs();
    apic::start_timer(TICK);
    smp::ONLINE.fetch_add(1, core::sync::atomic::Ordering::AcqRel);
    smp::lock(cpu);
    // SAFETY: the lock is held.
    let (k, _) = unsafe { trap::state() };
    k.enter_cpu(cpu);
    trap::run()
}

/// The timer period in local APIC bus clocks (10 ms on KVM's 1 GHz bus).
const TICK: u32 = 10_000_000;

/// Starts the periodic timer (10 ms at KVM's 1 GHz APIC bus).
pub fn start_timer() {
    apic::start_timer(TICK);
}

/// Physical address of the boot PML4 (the kernel's own page tables).
pub fn kernel_root() -> u64 {
    extern "C" {
        static boot_pml4: u8;
    }
    // Only the address is taken; .boot.data is linked at its physical address.
    core::ptr::addr_of!(boot_pml4) as u64
}

/// Virtual range of the kernel image (linked in the top 2 GiB).
pub fn kernel_virt_range() -> (u64, u64) {
    extern "C" {
        static __kernel_virt_start: u8;
        static __kernel_virt_end: u8;
    }
    (core::ptr::addr_of!(__kernel_virt_start) as u64, core::ptr::addr_of!(__kernel_virt_end) as u64)
}

/// Physical range of the kernel image.
pub fn kernel_image() -> (u64, u64) {
    extern "C" {
        static __kernel_phys_start: u8;
        static __kernel_phys_end: u8;
    }
    (core::ptr::addr_of!(__kernel_phys_start) as u64, core::ptr::addr_of!(__kernel_phys_end) as u64)
}

/// The platform handle (zeroing device probed).
pub fn probe_machine() {
    // SAFETY: boot, interrupts off.
    let (_, m) = unsafe { trap::state() };
    *m = platform::Machine::new();
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
