//! Loading the boot image into guest memory and describing it to the guest (PVH).

pub mod acpi;
pub mod elf;
pub mod layout;
pub mod pvh;
