//! What the boot loader hands the kernel: the PVH start info and the command line.

pub mod acpi;
pub mod cmdline;
pub mod cpio;
pub mod pvh;

use l4_abi::bootinfo;

/// The most boot files the kernel keeps.
pub const MAX_BOOT_FILES: usize = 32;

/// A boot file: part of a boot module, read-only.
#[derive(Clone, Copy, Debug)]
pub struct BootFile {
    pub pa: u64,
    pub size: u64,
    pub name: [u8; bootinfo::NAME_BYTES],
}
