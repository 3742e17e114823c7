//! Bad input: every case gets a one-line error and exit status 2, never a panic, and no
//! VM runs.

mod common;

use common::*;

/// Runs l4vmm and checks for exactly one line of error on stderr mentioning `needle`.
fn refused(args: &[&str], needle: &str) {
    let r = l4vmm(args);
    r.assert_code(2).assert_stderr_has(needle);
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    let errors: Vec<_> = r.stderr.lines().filter(|l| l.starts_with("l4vmm: error:")).collect();
    assert_eq!(errors.len(), 1, "exactly one error line expected:\n{}", r.stderr);
    assert!(!r.stdout.contains("l4 kernel"), "no guest may run:\n{}", r.stdout);
}

fn kernel_bytes() -> Vec<u8> {
    std::fs::read(kernel_elf()).expect("read the built kernel")
}

#[test]
fn missing_files() {
    refused(&["--kernel", "/nonexistent/kernel.elf"], "cannot read kernel '/nonexistent/kernel.elf'");
    refused(&["--module", "/nonexistent/mod"], "cannot read module '/nonexistent/mod'");
    refused(&["--kernel", "/"], "cannot read kernel '/'");
}

#[test]
fn not_an_elf() {
    let dir = TempDir::new("notelf");
    let p = dir.file("k", b"#!/bin/sh\necho not a kernel\n");
    refused(&["--kernel", p.to_str().unwrap()], "is not an ELF file");
    let empty = dir.file("empty", b"");
    refused(&["--kernel", empty.to_str().unwrap()], "is empty");
}

#[test]
fn truncated_elf() {
    let dir = TempDir::new("trunc");
    let k = kernel_bytes();
    for len in [40, 200, 5000, k.len() / 2] {
        let p = dir.file(&format!("k{len}"), &k[..len]);
        refused(&["--kernel", p.to_str().unwrap()], "is truncated");
    }
}

/// Sets field `off` (8 bytes) of program header `index` to `value`.
fn patch_phdr(k: &mut [u8], index: usize, off: usize, value: u64) {
    let phoff = u64::from_le_bytes(k[32..40].try_into().unwrap()) as usize;
    let at = phoff + 56 * index + off;
    k[at..at + 8].copy_from_slice(&value.to_le_bytes());
}

#[test]
fn segments_outside_guest_memory() {
    let dir = TempDir::new("outside");
    let mut k = kernel_bytes();
    patch_phdr(&mut k, 1, 24, 0xffff_0000_0000); // p_paddr of the text segment
    let p = dir.file("high", &k);
    refused(&["--kernel", p.to_str().unwrap()], "is outside guest memory");
    let mut k = kernel_bytes();
    patch_phdr(&mut k, 1, 24, 0x1000); // below 1 MiB, over l4vmm's boot data
    let p = dir.file("low", &k);
    refused(&["--kernel", p.to_str().unwrap()], "is outside guest memory");
}

#[test]
fn memory_too_small_for_the_image() {
    let dir = TempDir::new("small");
    let m = dir.file("big", &vec![0x5a; 6 << 20]);
    refused(&["--mem", "4", "--module", m.to_str().unwrap()], "--mem 4 MiB is too small for this image");
}

#[test]
fn bad_flags() {
    // clap's own errors: not "l4vmm: error:" lines, so check them directly.
    for args in [&["--bogus"][..], &["--vcpus"], &["--mem", "lots"], &["--timeout", "soon"]] {
        let r = l4vmm(args);
        r.assert_code(2);
        assert!(r.stderr.starts_with("error: "), "{}", r.stderr);
        assert!(!r.stderr.contains("panicked"));
    }
    refused(&["--vcpus", "0"], "--vcpus must be between 1 and");
    refused(&["--vcpus", "1000"], "--vcpus must be between 1 and");
    refused(&["--mem", "1"], "--mem must be between");
    refused(&["--timeout", "0"], "--timeout must be a positive number");
    refused(&["--cmdline", "tab\there"], "--cmdline may only hold printable ASCII");
    refused(&["--gdb-wait"], "--gdb-wait needs --gdb");
    refused(&["--gdb", "tcp:localhost"], "is not tcp:HOST:PORT or unix:PATH");
}
