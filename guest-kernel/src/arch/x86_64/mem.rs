//! `memcpy`, `memmove`, `memset`, `memcmp` and `bcmp` for the freestanding kernel.
//!
//! compiler_builtins on the linux-gnu target does not provide them. They are written with
//! string instructions in inline assembly: plain Rust loops could be turned back into calls
//! to themselves by LLVM. Forward copies and fills move 8 bytes at a time (`rep movsq`,
//! `rep stosq`, then the last bytes with `rep movsb`/`stosb`): PVM's emulator and QEMU's
//! TCG both run a string instruction one iteration at a time, so a quadword iteration
//! moves 8 times as much for about the same cost. `ktest=copy` measured a 4 KiB copy at
//! 9.5 M TSC cycles with `rep movsb`, 1.26 M with `rep movsq` and 6.1 M with a loop of
//! 8-byte moves on PVM; 15,262, 2,054 and 2,340 on the nested kvm_amd host (SSE moves are
//! not an option in ring 0: PVM kills the VM). Both hosts rank them the same, so there is
//! nothing to choose at boot (docs/DECISIONS.md, "Bulk copies move 8 bytes at a time").

use core::arch::asm;

/// # Safety
/// The C contract: `dst` and `src` valid for `n` bytes and not overlapping.
#[no_mangle]
pub unsafe extern "C" fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: the caller upholds memcpy's contract; rep movsq copies n / 8 quadwords and
    // rep movsb the n % 8 bytes after them, forward (DF is clear: the kernel never sets it
    // outside memmove, and the entry stubs clear it).
    unsafe {
        asm!("rep movsq", "mov ecx, {tail:e}", "rep movsb",
             tail = in(reg) n % 8,
             inout("rdi") dst => _, inout("rsi") src => _, inout("rcx") n / 8 => _,
             options(nostack, preserves_flags));
    }
    dst
}

/// # Safety
/// The C contract: `dst` and `src` valid for `n` bytes; they may overlap.
#[no_mangle]
pub unsafe extern "C" fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dst as usize).wrapping_sub(src as usize) >= n {
        // dst is below src, or the ranges do not overlap: a forward copy is safe.
        // SAFETY: as for memcpy; forward copying never reads a byte it already wrote.
        unsafe { memcpy(dst, src, n) }
    } else {
        // SAFETY: copies backwards from the last byte, so overlapping bytes are read before
        // they are overwritten; DF is restored before returning.
        unsafe {
            asm!("std", "rep movsb", "cld",
                 inout("rdi") dst.add(n - 1) => _, inout("rsi") src.add(n - 1) => _,
                 inout("rcx") n => _, options(nostack));
        }
        dst
    }
}

/// # Safety
/// The C contract: `dst` valid for `n` bytes.
#[no_mangle]
pub unsafe extern "C" fn memset(dst: *mut u8, c: i32, n: usize) -> *mut u8 {
    // The byte in every byte of a quadword.
    let q = u64::from(c as u8) * 0x0101_0101_0101_0101;
    // SAFETY: the caller upholds memset's contract; rep stosq writes n / 8 quadwords and
    // rep stosb the n % 8 bytes after them (al is q's low byte, the byte).
    unsafe {
        asm!("rep stosq", "mov ecx, {tail:e}", "rep stosb",
             tail = in(reg) n % 8,
             inout("rdi") dst => _, inout("rcx") n / 8 => _, in("rax") q,
             options(nostack, preserves_flags));
    }
    dst
}

/// # Safety
/// The C contract: `a` and `b` valid for `n` bytes.
#[no_mangle]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    let mut i = 0;
    while i < n {
        // SAFETY: i < n and both pointers are valid for n bytes.
        let (x, y) = unsafe { (a.add(i).read_volatile(), b.add(i).read_volatile()) };
        if x != y {
            return x as i32 - y as i32;
        }
        i += 1;
    }
    0
}

/// # Safety
/// The C contract: `a` and `b` valid for `n` bytes.
#[no_mangle]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: same contract.
    unsafe { memcmp(a, b, n) }
}
