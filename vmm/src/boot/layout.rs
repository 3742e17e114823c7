//! The guest-physical memory layout l4vmm sets up at boot.
//!
//! ```text
//! 0x0000_6000  hvm_start_info                      (START_INFO)
//! 0x0000_6100  module list, MAX_MODULES entries    (MODLIST)
//! 0x0000_7000  memory map, up to 8 entries         (MEMMAP)
//! 0x0002_0000  kernel command line, NUL-terminated (CMDLINE, CMDLINE_MAX bytes)
//! 0x0002_1000  module names, NUL-terminated        (MODULE_NAMES, MODULE_NAME_MAX each)
//! 0x0009_fc00  reserved up to 1 MiB (legacy BIOS area, in the memory map)
//! 0x0010_0000  the kernel's PT_LOAD segments (at their p_paddr), then the modules,
//!              each page-aligned, in order
//!   ...        free RAM up to min(mem, 3 GiB)
//! 0xc000_0000  MMIO hole (IOAPIC 0xfec0_0000, local APIC 0xfee0_0000)
//! 0x1_0000_0000  the rest of RAM when --mem is above 3 GiB
//! ```

/// `hvm_start_info`.
pub const START_INFO: u64 = 0x6000;
/// The module list (`hvm_modlist_entry` array).
pub const MODLIST: u64 = 0x6100;
/// The most boot modules.
pub const MAX_MODULES: usize = 64;
/// The memory map (`hvm_memmap_table_entry` array).
pub const MEMMAP: u64 = 0x7000;
/// The kernel command line.
pub const CMDLINE: u64 = 0x20000;
/// Room for the command line including its NUL.
pub const CMDLINE_MAX: u64 = 0x1000;
/// Module names.
pub const MODULE_NAMES: u64 = 0x21000;
/// Room for one module name including its NUL.
pub const MODULE_NAME_MAX: u64 = 256;
/// Start of the legacy reserved area below 1 MiB.
pub const EBDA_START: u64 = 0x9fc00;
/// Start of RAM above the legacy area: the lowest address a kernel segment may use.
pub const HIMEM_START: u64 = 0x10_0000;
/// End of RAM below the MMIO hole.
pub const LOW_RAM_END_MAX: u64 = 0xc000_0000;
/// Start of RAM above 4 GiB.
pub const HIGH_RAM_START: u64 = 1 << 32;
/// RAM the kernel needs above the image and modules for its own frames.
pub const KERNEL_HEADROOM: u64 = 1 << 20;
/// Page size.
pub const PAGE_SIZE: u64 = 4096;

/// The guest RAM ranges `(start, size)` for `mem` bytes of RAM.
pub fn ram_ranges(mem: u64) -> Vec<(u64, u64)> {
    if mem <= LOW_RAM_END_MAX {
        vec![(0, mem)]
    } else {
        vec![(0, LOW_RAM_END_MAX), (HIGH_RAM_START, mem - LOW_RAM_END_MAX)]
    }
}

/// End of RAM below the MMIO hole.
pub fn low_ram_end(mem: u64) -> u64 {
    mem.min(LOW_RAM_END_MAX)
}

/// Rounds up to a page.
pub fn page_align(x: u64) -> u64 {
    x.div_ceil(PAGE_SIZE) * PAGE_SIZE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_data_does_not_overlap() {
        assert!(START_INFO + 56 <= MODLIST);
        assert!(MODLIST + MAX_MODULES as u64 * 32 <= MEMMAP);
        assert!(MEMMAP + 8 * 24 <= CMDLINE);
        assert!(CMDLINE + CMDLINE_MAX <= MODULE_NAMES);
        assert!(MODULE_NAMES + MAX_MODULES as u64 * MODULE_NAME_MAX <= EBDA_START);
    }

    #[test]
    fn ram_splits_around_the_mmio_hole() {
        assert_eq!(ram_ranges(256 << 20), vec![(0, 256 << 20)]);
        assert_eq!(ram_ranges(4 << 30), vec![(0, 3 << 30), (4 << 30, 1 << 30)]);
        assert_eq!(low_ram_end(4 << 30), 3 << 30);
    }
}
