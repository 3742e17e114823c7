//! The PVH start info: memory map, modules and command line, written with linux-loader.

use linux_loader::cmdline::Cmdline;
use linux_loader::configurator::pvh::PvhBootConfigurator;
use linux_loader::configurator::{BootConfigurator, BootParams};
use linux_loader::loader::elf::start_info::{hvm_memmap_table_entry, hvm_modlist_entry, hvm_start_info};
use linux_loader::loader::load_cmdline;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::layout::*;
use crate::error::Error;
use crate::image::{Blob, ImageError};

const XEN_HVM_START_MAGIC_VALUE: u32 = 0x336e_c578;
const E820_RAM: u32 = 1;
const E820_RESERVED: u32 = 2;

/// Where a module was placed.
#[derive(Debug, Clone)]
pub struct PlacedModule {
    pub paddr: u64,
    pub size: u64,
}

/// Copies the modules into guest RAM, page-aligned, from `after` upwards, and checks that
/// the kernel still has [`KERNEL_HEADROOM`] above them.
pub fn place_modules(
    modules: &[Blob],
    after: u64,
    mem: u64,
    memory: &GuestMemoryMmap,
) -> Result<Vec<PlacedModule>, Error> {
    let low_end = low_ram_end(mem);
    let mut next = page_align(after);
    let mut placed = Vec::with_capacity(modules.len());
    for m in modules {
        let size = m.bytes.len() as u64;
        if size > LOW_RAM_END_MAX {
            return Err(ImageError::ModuleTooLarge { name: m.name.clone(), size, max: LOW_RAM_END_MAX }.into());
        }
        placed.push(PlacedModule { paddr: next, size });
        next = page_align(next + size.max(1));
    }
    let need = next + KERNEL_HEADROOM;
    if need > low_end {
        let mem_mib = mem >> 20;
        return Err(ImageError::MemTooSmall { mem_mib, need_mib: need.div_ceil(1 << 20) }.into());
    }
    for (m, p) in modules.iter().zip(&placed) {
        memory
            .write_slice(&m.bytes, GuestAddress(p.paddr))
            .map_err(|e| Error::Memory(format!("writing module '{}': {e}", m.name)))?;
    }
    Ok(placed)
}

/// The memory map the guest sees.
pub fn memory_map(mem: u64) -> Vec<hvm_memmap_table_entry> {
    let entry = |addr: u64, size: u64, type_: u32| hvm_memmap_table_entry { addr, size, type_, reserved: 0 };
    let mut map = vec![
        entry(0, EBDA_START, E820_RAM),
        entry(EBDA_START, HIMEM_START - EBDA_START, E820_RESERVED),
        entry(HIMEM_START, low_ram_end(mem) - HIMEM_START, E820_RAM),
    ];
    if mem > LOW_RAM_END_MAX {
        map.push(entry(HIGH_RAM_START, mem - LOW_RAM_END_MAX, E820_RAM));
    }
    map
}

/// Writes the command line, module names, module list, memory map and `hvm_start_info`.
pub fn write_start_info(
    memory: &GuestMemoryMmap,
    mem: u64,
    cmdline: &str,
    modules: &[Blob],
    placed: &[PlacedModule],
    rsdp: u64,
) -> Result<(), Error> {
    let boot_err = |what: &str, e: &dyn std::fmt::Display| Error::Memory(format!("{what}: {e}"));

    let mut cl = Cmdline::new(CMDLINE_MAX as usize).map_err(|e| boot_err("command line", &e))?;
    cl.insert_str(cmdline).map_err(|e| boot_err("command line", &e))?;
    load_cmdline(memory, GuestAddress(CMDLINE), &cl).map_err(|e| boot_err("command line", &e))?;

    let mut modlist = Vec::with_capacity(placed.len());
    for (i, (m, p)) in modules.iter().zip(placed).enumerate() {
        let name_addr = MODULE_NAMES + i as u64 * MODULE_NAME_MAX;
        let mut name: Vec<u8> = m.name.bytes().filter(|b| (0x20..0x7f).contains(b)).collect();
        name.truncate(MODULE_NAME_MAX as usize - 1);
        name.push(0);
        memory.write_slice(&name, GuestAddress(name_addr)).map_err(|e| boot_err("module name", &e))?;
        modlist.push(hvm_modlist_entry { paddr: p.paddr, size: p.size, cmdline_paddr: name_addr, reserved: 0 });
    }

    let memmap = memory_map(mem);
    let start_info = hvm_start_info {
        magic: XEN_HVM_START_MAGIC_VALUE,
        version: 1,
        nr_modules: modlist.len() as u32,
        modlist_paddr: if modlist.is_empty() { 0 } else { MODLIST },
        cmdline_paddr: CMDLINE,
        memmap_paddr: MEMMAP,
        memmap_entries: memmap.len() as u32,
        rsdp_paddr: rsdp,
        ..Default::default()
    };
    let mut params = BootParams::new::<hvm_start_info>(&start_info, GuestAddress(START_INFO));
    params.set_sections::<hvm_memmap_table_entry>(&memmap, GuestAddress(MEMMAP));
    if !modlist.is_empty() {
        params.set_modules::<hvm_modlist_entry>(&modlist, GuestAddress(MODLIST));
    }
    PvhBootConfigurator::write_bootparams::<GuestMemoryMmap>(&params, memory)
        .map_err(|e| boot_err("PVH start info", &e))
}
