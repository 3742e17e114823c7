//! The machine under the portable kernel: physical memory through the direct map, the
//! serial console, the VMM's zeroing and exit devices, TLB shootdowns.
//!
//! It holds what it needs itself (the CPUs online) and never reaches into the kernel's
//! state: its methods run while the kernel's `&mut` is live.

use l4_abi::port::{ZERO, ZERO_MAGIC};
use l4_kernel::mm::PhysMem;
use l4_kernel::platform::Platform;

use super::{port, DIRECT_MAP_SIZE, PHYS_OFFSET};

/// The platform. `vmm_zero`: the VMM's zeroing device answered at boot; `cpus`: the CPUs
/// online (1 until the others have started), whom a TLB shootdown must reach.
pub struct Machine {
    pub vmm_zero: bool,
    pub cpus: usize,
}

impl Machine {
    /// Probes the zeroing device (l4vmm has it; other VMMs read all-ones).
    pub fn new() -> Self {
        Machine { vmm_zero: port::inl(ZERO) == ZERO_MAGIC, cpus: 1 }
    }
}

fn ptr(pa: u64, len: u64) -> *mut u8 {
    // Every physical address the kernel handles comes from the memory map or from its own
    // page tables, all below DIRECT_MAP_SIZE; a bug here must not turn into a wild access.
    assert!(pa.checked_add(len).is_some_and(|e| e <= DIRECT_MAP_SIZE), "physical address outside the direct map");
    (PHYS_OFFSET + pa) as *mut u8
}

impl PhysMem for Machine {
    fn read_u64(&self, pa: u64) -> u64 {
        // SAFETY: in the direct map (checked), aligned by the callers (page-table entries).
        unsafe { (ptr(pa, 8) as *const u64).read_volatile() }
    }
    fn write_u64(&mut self, pa: u64, value: u64) {
        // SAFETY: as for read_u64; the kernel owns the frame it writes.
        unsafe { (ptr(pa, 8) as *mut u64).write_volatile(value) }
    }
    fn read_bytes(&self, pa: u64, buf: &mut [u8]) {
        // SAFETY: the source range is in the direct map (checked) and does not overlap buf
        // (a kernel stack buffer).
        unsafe { core::ptr::copy_nonoverlapping(ptr(pa, buf.len() as u64), buf.as_mut_ptr(), buf.len()) }
    }
    fn write_bytes(&mut self, pa: u64, bytes: &[u8]) {
        // SAFETY: as for read_bytes, in the other direction.
        unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), ptr(pa, bytes.len() as u64), bytes.len()) }
    }
    fn copy_frame(&mut self, dst: u64, src: u64) {
        // SAFETY: two whole frames in the direct map (checked) that the kernel owns; a
        // copy-on-write break copies from a shared frame to a fresh one, so they never
        // overlap. One `memcpy`: 512 iterations of `rep movsq` (see `mem`).
        unsafe { core::ptr::copy_nonoverlapping(ptr(src, 4096), ptr(dst, 4096), 4096) }
    }
    fn zero_frame(&mut self, pa: u64) {
        if self.vmm_zero && pa >> 12 <= u64::from(u32::MAX) {
            // One VM exit instead of 512 emulated stores.
            port::outl(ZERO, (pa >> 12) as u32);
        } else {
            // SAFETY: a whole frame in the direct map (checked) that the kernel owns.
            unsafe { core::ptr::write_bytes(ptr(pa, 4096), 0, 4096) }
        }
    }
}

impl Platform for Machine {
    fn table<T: Copy>(&mut self, pa: u64, n: usize, init: T) -> &'static mut [T] {
        let bytes = (n as u64).checked_mul(core::mem::size_of::<T>() as u64).expect("table size");
        let base = ptr(pa, bytes) as *mut T;
        assert!(pa % 4096 == 0 && core::mem::align_of::<T>() <= 4096, "a table starts on a frame");
        if n == 0 {
            return &mut [];
        }
        // The first element, then copies of what is done so far, doubling: about log2(n)
        // `memcpy`s (string instructions, see `mem`) instead of n stores of a T.
        // SAFETY (both blocks): every element written lies inside the checked range, in
        // frames the frame allocator gave up for good, so nothing else refers to them;
        // frame-aligned, so aligned for T; the copied elements are initialized Copy values
        // and source and destination do not overlap ([0, c) and [done, done + c), c <= done).
        unsafe { base.write(init) };
        let mut done = 1;
        while done < n {
            let c = done.min(n - done);
            // SAFETY: as above; [0, c) is initialized and does not overlap [done, done + c).
            unsafe { core::ptr::copy_nonoverlapping(base, base.add(done), c) };
            done += c;
        }
        // SAFETY: the n elements were just initialized; the range is used by nothing else for
        // the rest of the kernel's life, and this is its only reference.
        unsafe { core::slice::from_raw_parts_mut(base, n) }
    }
    fn console(&mut self, bytes: &[u8]) {
        super::serial::write_bytes(bytes);
    }
    fn phys_slice(&self, pa: u64, len: u64) -> Option<&[u8]> {
        let end = pa.checked_add(len)?;
        if end > DIRECT_MAP_SIZE {
            return None;
        }
        // SAFETY: inside the direct map; boot files are never written by anyone.
        Some(unsafe { core::slice::from_raw_parts((PHYS_OFFSET + pa) as *const u8, len as usize) })
    }
    fn machine_exit(&mut self, code: u8) {
        super::exit(code);
    }
    fn trace(&mut self, op: u64) -> Option<u64> {
        match op {
            0 => super::count::open().then_some(0),
            1 => {
                super::count::close();
                Some(0)
            }
            2 => Some(super::count::read()),
            _ => Some(super::count::status()),
        }
    }
    fn flush_tlb(&mut self, root: u64, va: u64) {
        if super::cpu::cr3() & !0xfff == root {
            super::cpu::invlpg(va);
        }
        if self.cpus > 1 {
            super::smp::shootdown(super::percpu::this_cpu(), self.cpus, root, false);
        }
    }
    fn bounce_root(&mut self, via: u64) {
        let mine = super::cpu::cr3();
        // SAFETY: `via` is a root the kernel built (it maps the kernel half, so this code
        // keeps running), and `mine` is reloaded at once. Both happen under the big
        // kernel lock, so no shootdown can need the loaded-root record in between, which
        // stays that of `mine`.
        unsafe {
            super::cpu::set_cr3(via);
            super::cpu::set_cr3(mine);
        }
    }
    fn retire_root(&mut self, root: u64) {
        let (cpus, kroot) = (self.cpus, super::kernel_root());
        let me = super::percpu::this_cpu();
        if super::cpu::cr3() & !0xfff == root {
            // SAFETY: the kernel's own root maps everything the kernel needs.
            unsafe { super::cpu::set_cr3(kroot) };
            super::smp::loaded(me, kroot);
        }
        if cpus > 1 {
            super::smp::shootdown(me, cpus, root, true);
        }
    }
}
