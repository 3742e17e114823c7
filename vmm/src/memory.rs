//! Guest RAM: anonymous host mappings (so the guest starts with zeroed memory and the
//! kernel never zeroes in ring 0), registered with KVM as one memory slot per range.

use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::VmFd;
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

use crate::boot::layout;
use crate::error::{Error, Result};

/// Creates `mem` bytes of guest RAM laid out by [`layout::ram_ranges`] and registers it.
pub fn create(vm: &VmFd, mem: u64) -> Result<GuestMemoryMmap> {
    let ranges: Vec<(GuestAddress, usize)> =
        layout::ram_ranges(mem).into_iter().map(|(start, size)| (GuestAddress(start), size as usize)).collect();
    let memory = GuestMemoryMmap::from_ranges(&ranges)
        .map_err(|e| Error::Memory(format!("cannot map {} MiB: {e}", mem >> 20)))?;
    for (slot, region) in memory.iter().enumerate() {
        let host = memory.get_host_address(region.start_addr()).map_err(|e| Error::Memory(e.to_string()))?;
        let r = kvm_userspace_memory_region {
            slot: slot as u32,
            flags: 0,
            guest_phys_addr: region.start_addr().0,
            memory_size: region.len(),
            userspace_addr: host as u64,
        };
        // SAFETY: the region is a live mapping owned by `memory`, which the Vmm keeps for
        // as long as the VM exists (the VmFd is dropped first).
        unsafe { vm.set_user_memory_region(r) }.map_err(Error::kvm("set_user_memory_region"))?;
    }
    Ok(memory)
}
