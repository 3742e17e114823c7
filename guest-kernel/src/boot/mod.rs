//! What the boot loader hands the kernel: the PVH start info and the command line.

pub mod acpi;
pub mod cmdline;
pub mod cpio;
pub mod pvh;
