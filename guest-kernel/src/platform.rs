//! What the portable kernel needs from the machine.

use crate::mm::PhysMem;

/// The machine under the portable kernel: physical memory plus a few services.
pub trait Platform: PhysMem {
    /// Prints bytes on the kernel console.
    fn console(&mut self, bytes: &[u8]);
    /// A read-only view of physical memory (boot files).
    fn phys_slice(&self, pa: u64, len: u64) -> Option<&[u8]>;
    /// Ends the virtual machine with `code` (does not return on the machine).
    fn machine_exit(&mut self, code: u8);
    /// This CPU's ring-0 instruction-count window (the VMM counts): 0 opens it (`None`:
    /// not now, a timer tick is pending; try again), 1 closes it, 2 reads the last count
    /// (all-ones: unavailable), 3 says whether it is closed (0), open (1), or was ended by
    /// the platform's watchdog (2).
    fn trace(&mut self, op: u64) -> Option<u64>;
    /// Drops stale translations for `va` in the address space `root`, on every CPU that
    /// has it loaded, before returning.
    fn flush_tlb(&mut self, root: u64, va: u64);
    /// Loads the address space `via` on this CPU and then the one loaded before: the
    /// page-table switches of an IPC round trip between two address spaces, alone.
    fn bounce_root(&mut self, via: u64);
    /// The address space `root` is about to be freed: no CPU may keep it loaded.
    fn retire_root(&mut self, root: u64);
    /// A kernel table: `n` objects, each `init`, in the frames at `pa`, which the caller
    /// took for good from the frame allocator (`Frames::take_contiguous`) and holds
    /// `n * size_of::<T>()` bytes. Called once per table at boot.
    fn table<T: Copy>(&mut self, pa: u64, n: usize, init: T) -> &'static mut [T];
}
