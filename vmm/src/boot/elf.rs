//! Validating and loading the kernel ELF.
//!
//! linux-loader does the loading and finds the PVH note, but its errors are terse and it
//! checks neither where segments land nor whether they fit: [`validate`] does that first
//! (with goblin), so that bad input gets a precise one-line error and never a half-loaded
//! guest.

use std::io::Cursor;

use goblin::elf::header::{EM_X86_64, ET_EXEC};
use goblin::elf::program_header::PT_LOAD;
use goblin::elf::Elf;
use linux_loader::loader::elf::{Elf as ElfLoader, PvhBootCapability};
use linux_loader::loader::KernelLoader;
use vm_memory::{GuestAddress, GuestMemoryMmap};

use super::layout::{HIMEM_START, LOW_RAM_END_MAX};
use crate::image::{Blob, ImageError};

/// What validation learned about the kernel.
#[derive(Debug, Clone, Copy)]
pub struct KernelLayout {
    /// Lowest guest-physical address of a PT_LOAD segment.
    pub start: u64,
    /// One past the highest byte of a PT_LOAD segment (`p_paddr + p_memsz`).
    pub end: u64,
}

/// Checks that `kernel` is a 64-bit x86_64 executable whose segments lie, whole, in the
/// file and between 1 MiB and the MMIO hole.
pub fn validate(kernel: &Blob) -> Result<KernelLayout, ImageError> {
    let name = &kernel.name;
    let bytes = &kernel.bytes;
    if bytes.is_empty() {
        return Err(ImageError::Empty(name.clone()));
    }
    if bytes.len() < 4 || &bytes[..4] != b"\x7fELF" {
        return Err(ImageError::NotElf(name.clone()));
    }
    let len = bytes.len() as u64;
    let header = Elf::parse_header(bytes).map_err(|e| {
        if len < 64 {
            ImageError::Truncated { name: name.clone(), detail: format!("{len} bytes is shorter than an ELF header") }
        } else {
            ImageError::Malformed { name: name.clone(), reason: e.to_string() }
        }
    })?;
    // The header says how far the program and section header tables reach: a file that
    // stops before that was cut short.
    let table_end = |off: u64, num: u16, size: u16| off.saturating_add(u64::from(num) * u64::from(size));
    let declared = table_end(header.e_phoff, header.e_phnum, header.e_phentsize).max(table_end(
        header.e_shoff,
        header.e_shnum,
        header.e_shentsize,
    ));
    if declared > len {
        return Err(ImageError::Truncated {
            name: name.clone(),
            detail: format!("the file is {len} bytes but its headers describe {declared} bytes"),
        });
    }
    let elf = Elf::parse(bytes).map_err(|e| ImageError::Malformed { name: name.clone(), reason: e.to_string() })?;
    if !elf.is_64 || !elf.little_endian || elf.header.e_machine != EM_X86_64 {
        return Err(ImageError::WrongKind {
            name: name.clone(),
            detail: format!("class {}, machine {}", if elf.is_64 { 64 } else { 32 }, elf.header.e_machine),
        });
    }
    if elf.header.e_type != ET_EXEC {
        return Err(ImageError::WrongKind { name: name.clone(), detail: format!("e_type {}", elf.header.e_type) });
    }
    let mut layout: Option<KernelLayout> = None;
    for (index, ph) in elf.program_headers.iter().enumerate() {
        if ph.p_type != PT_LOAD {
            continue;
        }
        let file_end = ph.p_offset.checked_add(ph.p_filesz);
        if file_end.is_none_or(|e| e > bytes.len() as u64) {
            return Err(ImageError::Truncated {
                name: name.clone(),
                detail: format!(
                    "segment {index} needs file bytes [{:#x}, {:#x}) but the file has {:#x}",
                    ph.p_offset,
                    ph.p_offset.saturating_add(ph.p_filesz),
                    bytes.len()
                ),
            });
        }
        if ph.p_filesz > ph.p_memsz {
            return Err(ImageError::Malformed {
                name: name.clone(),
                reason: format!("segment {index} has p_filesz > p_memsz"),
            });
        }
        let start = ph.p_paddr;
        let end = start.checked_add(ph.p_memsz).unwrap_or(u64::MAX);
        if start < HIMEM_START || end > LOW_RAM_END_MAX {
            return Err(ImageError::OutsideMemory {
                name: name.clone(),
                index,
                start,
                end,
                min: HIMEM_START,
                max: LOW_RAM_END_MAX,
            });
        }
        let l = layout.get_or_insert(KernelLayout { start, end });
        l.start = l.start.min(start);
        l.end = l.end.max(end);
    }
    layout.ok_or_else(|| ImageError::NoSegments { name: name.clone() })
}

/// Loads a validated kernel into guest memory and returns its 32-bit PVH entry point.
pub fn load(kernel: &Blob, memory: &GuestMemoryMmap) -> Result<GuestAddress, ImageError> {
    let mut cursor = Cursor::new(&kernel.bytes[..]);
    let result = ElfLoader::load(memory, None, &mut cursor, Some(GuestAddress(HIMEM_START)))
        .or_else(|e| match e {
            // The entry check compares e_entry (a virtual address) with the load address;
            // a higher-half kernel passes it, a low one may not: retry without it.
            linux_loader::loader::Error::Elf(linux_loader::loader::elf::Error::InvalidEntryAddress) => {
                ElfLoader::load(memory, None, &mut cursor, None)
            }
            e => Err(e),
        })
        .map_err(|e| ImageError::Malformed { name: kernel.name.clone(), reason: e.to_string() })?;
    match result.pvh_boot_cap {
        PvhBootCapability::PvhEntryPresent(entry) => Ok(entry),
        _ => Err(ImageError::NoPvhNote { name: kernel.name.clone() }),
    }
}
