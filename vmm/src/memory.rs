//! Guest RAM: anonymous host mappings (so the guest starts with zeroed memory and the
//! kernel never zeroes in ring 0), registered with KVM as memory slots.

use std::collections::BTreeSet;

use kvm_bindings::{kvm_userspace_memory_region, KVM_MEM_READONLY};
use kvm_ioctls::VmFd;
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

use crate::boot::layout;
use crate::error::{Error, Result};

/// Creates `mem` bytes of guest RAM laid out by [`layout::ram_ranges`] and registers it,
/// one KVM slot per range.
pub fn create(vm: &VmFd, mem: u64) -> Result<GuestMemoryMmap> {
    let ranges: Vec<(GuestAddress, usize)> =
        layout::ram_ranges(mem).into_iter().map(|(start, size)| (GuestAddress(start), size as usize)).collect();
    let memory = GuestMemoryMmap::from_ranges(&ranges)
        .map_err(|e| Error::Memory(format!("cannot map {} MiB: {e}", mem >> 20)))?;
    register(vm, &memory, &BTreeSet::new(), 0)?;
    Ok(memory)
}

/// The runs `(start, len, read_only)` that cover guest RAM with every page in `readonly`
/// (guest-physical, 4 KiB aligned) in a run of its own.
fn pieces(memory: &GuestMemoryMmap, readonly: &BTreeSet<u64>) -> Vec<(u64, u64, bool)> {
    let mut pieces = Vec::new();
    for region in memory.iter() {
        let (start, end) = (region.start_addr().0, region.start_addr().0 + region.len());
        let mut at = start;
        for &page in readonly.range(start..end) {
            if page > at {
                pieces.push((at, page - at, false));
            }
            pieces.push((page, 0x1000, true));
            at = page + 0x1000;
        }
        if at < end {
            pieces.push((at, end - at, false));
        }
    }
    pieces
}

/// (Re)registers guest RAM with KVM, each page in `readonly` in a read-only slot of its own
/// so that guest writes to it exit as MMIO (the gdb stub's page-trap watchpoints).
/// `previous` is how many slots the last call used; returns how many this one uses. Call
/// only while no vCPU is running.
pub fn register(vm: &VmFd, memory: &GuestMemoryMmap, readonly: &BTreeSet<u64>, previous: u32) -> Result<u32> {
    let pieces = pieces(memory, readonly);
    for slot in 0..previous {
        let r = kvm_userspace_memory_region { slot, ..Default::default() };
        // SAFETY: deleting a slot (size 0) only ends KVM's use of its mapping.
        unsafe { vm.set_user_memory_region(r) }.map_err(Error::kvm("deleting a memory slot"))?;
    }
    for (slot, &(start, len, ro)) in pieces.iter().enumerate() {
        let host = memory.get_host_address(GuestAddress(start)).map_err(|e| Error::Memory(e.to_string()))?;
        let r = kvm_userspace_memory_region {
            slot: slot as u32,
            flags: if ro { KVM_MEM_READONLY } else { 0 },
            guest_phys_addr: start,
            memory_size: len,
            userspace_addr: host as u64,
        };
        // SAFETY: the range lies inside a live mapping owned by `memory`, which the Vmm
        // keeps for as long as the VM exists (the VmFd is dropped first).
        unsafe { vm.set_user_memory_region(r) }.map_err(Error::kvm("set_user_memory_region"))?;
    }
    Ok(pieces.len() as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trapped_pages_get_slots_of_their_own() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x10000)]).unwrap();
        let ro: BTreeSet<u64> = [0x3000, 0x4000, 0xf000].into_iter().collect();
        assert_eq!(
            pieces(&mem, &ro),
            vec![
                (0, 0x3000, false),
                (0x3000, 0x1000, true),
                (0x4000, 0x1000, true),
                (0x5000, 0xa000, false),
                (0xf000, 0x1000, true)
            ]
        );
        assert_eq!(pieces(&mem, &BTreeSet::new()), vec![(0, 0x10000, false)]);
    }
}
