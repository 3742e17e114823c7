//! `memcpy` and friends (compiler_builtins on the linux-gnu target does not provide them),
//! with string instructions so LLVM cannot turn them back into calls to themselves.

use core::arch::asm;

/// # Safety
/// The C contract: `d` and `s` valid for `n` bytes, not overlapping.
#[no_mangle]
pub unsafe extern "C" fn memcpy(d: *mut u8, s: *const u8, n: usize) -> *mut u8 {
    // SAFETY: the caller upholds memcpy's contract; DF is clear per the ABI.
    unsafe {
        asm!("rep movsb", inout("rdi") d => _, inout("rsi") s => _, inout("rcx") n => _, options(nostack, preserves_flags))
    };
    d
}

/// # Safety
/// The C contract: `d` and `s` valid for `n` bytes; they may overlap.
#[no_mangle]
pub unsafe extern "C" fn memmove(d: *mut u8, s: *const u8, n: usize) -> *mut u8 {
    if (d as usize).wrapping_sub(s as usize) >= n {
        // SAFETY: forward copy is safe when d is below s or the ranges do not overlap.
        unsafe { memcpy(d, s, n) }
    } else {
        // SAFETY: backward copy from the last byte; DF restored afterwards.
        unsafe {
            asm!("std", "rep movsb", "cld", inout("rdi") d.add(n - 1) => _, inout("rsi") s.add(n - 1) => _,
                 inout("rcx") n => _, options(nostack));
        }
        d
    }
}

/// # Safety
/// The C contract: `d` valid for `n` bytes.
#[no_mangle]
pub unsafe extern "C" fn memset(d: *mut u8, c: i32, n: usize) -> *mut u8 {
    // SAFETY: the caller upholds memset's contract.
    unsafe {
        asm!("rep stosb", inout("rdi") d => _, inout("rcx") n => _, in("al") c as u8, options(nostack, preserves_flags))
    };
    d
}

/// # Safety
/// The C contract: `a` and `b` valid for `n` bytes.
#[no_mangle]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    for i in 0..n {
        // SAFETY: i < n; volatile reads keep LLVM from turning this loop into a memcmp call.
        let (x, y) = unsafe { (a.add(i).read_volatile(), b.add(i).read_volatile()) };
        if x != y {
            return x as i32 - y as i32;
        }
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
