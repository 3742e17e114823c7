//! The ACPI tables that describe the vCPUs to the guest: RSDP -> XSDT -> MADT (one local
//! APIC per vCPU, the IOAPIC), written with rust-vmm's acpi_tables into the reserved area
//! below 1 MiB. The PVH start info points at the RSDP (`rsdp_paddr`).

use acpi_tables::madt::{EnabledStatus, IoApic, LocalInterruptController, ProcessorLocalApic, MADT};
use acpi_tables::rsdp::Rsdp;
use acpi_tables::xsdt::XSDT;
use acpi_tables::Aml;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::error::{Error, Result};

/// Where the tables go (inside the reserved 0x9fc00..1 MiB range of the memory map).
pub const RSDP: u64 = 0xe_0000;
const XSDT_ADDR: u64 = 0xe_1000;
const MADT_ADDR: u64 = 0xe_2000;
const OEM_ID: [u8; 6] = *b"L4VMM ";
const OEM_TABLE: [u8; 8] = *b"L4VMM   ";

/// Writes the tables for `vcpus` vCPUs (APIC IDs 0..vcpus); returns the RSDP address.
pub fn write(memory: &GuestMemoryMmap, vcpus: u32) -> Result<u64> {
    let mut madt = MADT::new(OEM_ID, OEM_TABLE, 1, LocalInterruptController::Address(0xfee0_0000));
    for id in 0..vcpus {
        madt.add_structure(ProcessorLocalApic::new(id as u8, id as u8, EnabledStatus::Enabled));
    }
    madt.add_structure(IoApic::new(vcpus as u8, 0xfec0_0000, 0));
    let mut xsdt = XSDT::new(OEM_ID, OEM_TABLE, 1);
    xsdt.add_entry(MADT_ADDR);
    let rsdp = Rsdp::new(OEM_ID, XSDT_ADDR);
    for (table, addr) in [(&rsdp as &dyn Aml, RSDP), (&xsdt, XSDT_ADDR), (&madt, MADT_ADDR)] {
        let mut bytes = Vec::new();
        table.to_aml_bytes(&mut bytes);
        memory.write_slice(&bytes, GuestAddress(addr)).map_err(|e| Error::Memory(format!("ACPI tables: {e}")))?;
    }
    Ok(RSDP)
}
