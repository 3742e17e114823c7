//! Host-side fuzzing (proptest) of what a user feeds l4vmm: the ELF/PVH loading path and
//! the command line. (The gdb packet path is fuzzed end to end, against a running l4vmm,
//! in tests/gdb.rs.)
//!
//! Each target starts from a corpus kept in the repository (`tests/corpus/`, plus the
//! real kernel ELF l4vmm embeds) and mutates it; the properties: nothing panics, every
//! failure is a typed error, and whatever is accepted satisfies the checks the rest of
//! l4vmm relies on. The case counts are bounded for CI (`PROPTEST_CASES` raises them);
//! proptest keeps failing cases in `vmm/proptest-regressions/`, replayed first on every
//! run.

use std::borrow::Cow;
use std::path::PathBuf;

use clap::Parser;
use proptest::prelude::*;
use vm_memory::{GuestAddress, GuestMemoryMmap};

use crate::boot::layout::{HIMEM_START, LOW_RAM_END_MAX};
use crate::boot::{elf, pvh};
use crate::cli::Cli;
use crate::config::{Config, MAX_MEM_MIB, MAX_VCPUS, MIN_MEM_MIB};
use crate::image::Blob;

fn corpus(dir: &str) -> Vec<(String, Vec<u8>)> {
    let d = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/corpus").join(dir);
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(&d)
        .map(|it| {
            it.filter_map(|e| e.ok())
                .filter_map(|e| Some((e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).ok()?)))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The ELF seeds: the kernel l4vmm embeds, and the corpus files.
fn elf_seeds() -> Vec<Vec<u8>> {
    let mut seeds = vec![std::fs::read(env!("L4_KERNEL_ELF")).expect("the embedded kernel ELF")];
    seeds.extend(corpus("elf").into_iter().map(|(_, b)| b));
    seeds
}

fn config() -> ProptestConfig {
    // 200 cases each in CI; PROPTEST_CASES=N for longer runs.
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    ProptestConfig { cases, ..ProptestConfig::default() }
}

/// Guest memory for loading: 64 MiB from 0, as l4vmm maps it (lazily backed).
fn memory() -> GuestMemoryMmap {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 64 << 20)]).expect("guest memory")
}

proptest! {
    #![proptest_config(config())]

    /// Mutated kernels: byte flips in the headers and anywhere, truncation, appended junk.
    #[test]
    fn mutated_elfs_are_validated_or_refused_never_half_loaded(
        seed in any::<prop::sample::Index>(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), any::<bool>()), 0..16),
        cut in prop::option::of(any::<prop::sample::Index>()),
        junk in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let seeds = elf_seeds();
        let mut bytes = seed.get(&seeds).clone();
        for (at, v, header) in flips {
            // Half the flips land in the first 4 KiB (ELF and program headers).
            let n = if header { bytes.len().min(4096) } else { bytes.len() };
            if n > 0 {
                bytes[at.index(n)] = v;
            }
        }
        if let Some(c) = cut {
            bytes.truncate(c.index(bytes.len() + 1));
        }
        bytes.extend_from_slice(&junk);
        let blob = Blob { name: "fuzzed kernel".into(), bytes: Cow::Owned(bytes) };
        if let Ok(layout) = elf::validate(&blob) {
            prop_assert!(layout.start >= HIMEM_START && layout.start <= layout.end && layout.end <= LOW_RAM_END_MAX);
            // Accepted: loading may still refuse it (no PVH note...), but with an error.
            if layout.end <= 64 << 20 {
                let _ = elf::load(&blob, &memory());
            }
        }
    }

    /// Random module sizes and guest sizes: modules are placed inside RAM, page-aligned,
    /// without overlap, or refused.
    #[test]
    fn modules_are_placed_inside_ram_or_refused(
        sizes in prop::collection::vec(0usize..(3 << 20), 0..5),
        after in (1u64 << 20)..(32 << 20),
        mem_mib in 4u64..64,
    ) {
        let modules: Vec<Blob> =
            sizes.iter().map(|&n| Blob { name: "m".into(), bytes: Cow::Owned(vec![0xa5; n]) }).collect();
        let mem = mem_mib << 20;
        let memory = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), mem as usize)]).expect("memory");
        if let Ok(placed) = pvh::place_modules(&modules, after, mem, &memory) {
            let mut prev_end = after;
            for p in &placed {
                prop_assert!(p.paddr % 4096 == 0 && p.paddr >= prev_end && p.paddr + p.size <= mem);
                prev_end = p.paddr + p.size;
            }
        }
    }

    /// Random command lines built from l4vmm's own flags and hostile values: parsed and
    /// validated, or refused with a typed error; accepted configs are within limits.
    #[test]
    fn command_lines_are_validated_or_refused(
        args in prop::collection::vec(
            (
                prop::sample::select(vec![
                    "--vcpus", "--mem", "--timeout", "--cmdline", "--gdb", "--gdb-wait", "--kernel",
                    "--module", "--no-seccomp", "--bogus", "-h", "--",
                ]),
                prop::sample::select(vec![
                    "0", "1", "64", "65", "-1", "4", "3", "65536", "65537", "1e9", "NaN", "inf", "0.001",
                    "18446744073709551616", "", " ", "tcp:", ":0", "unix:", "tcp:[::1]:1", "run=echo",
                    "a\u{7f}b", "\u{e9}", "ktest=exit=0",
                ]),
                any::<bool>(),
            ),
            0..6,
        ),
        corpus_line in any::<prop::sample::Index>(),
    ) {
        let mut argv = vec!["l4vmm".to_string()];
        for (flag, value, with_value) in args {
            argv.push(flag.to_string());
            if with_value {
                argv.push(value.to_string());
            }
        }
        // And one line of the corpus (known-bad command lines), split on spaces.
        let lines: Vec<String> = corpus("cli")
            .into_iter()
            .flat_map(|(_, b)| String::from_utf8_lossy(&b).lines().map(str::to_string).collect::<Vec<_>>())
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect();
        if !lines.is_empty() {
            argv.extend(corpus_line.get(&lines).split(' ').map(str::to_string));
        }
        if let Ok(cli) = Cli::try_parse_from(&argv) {
            if let Ok(c) = Config::from_cli(cli) {
                prop_assert!(c.vcpus >= 1 && c.vcpus <= MAX_VCPUS);
                prop_assert!((MIN_MEM_MIB..=MAX_MEM_MIB).contains(&c.mem_mib));
                prop_assert!(c.cmdline.bytes().all(|b| (0x20..0x7f).contains(&b)));
                prop_assert!(c.timeout.is_none_or(|t| !t.is_zero()));
            }
        }
    }
}

/// The seeds mean what their names say: the fuzz targets start from valid and from
/// refused inputs.
#[test]
fn the_elf_corpus_is_what_it_claims() {
    let seeds = corpus("elf");
    assert!(seeds.len() >= 10, "{} corpus files", seeds.len());
    for (name, bytes) in seeds {
        let blob = Blob { name: name.clone(), bytes: Cow::Owned(bytes) };
        let r = elf::validate(&blob);
        match name.as_str() {
            "pvh-minimal.elf" => {
                assert!(r.is_ok(), "{name}: {r:?}");
                assert_eq!(elf::load(&blob, &memory()).expect("loads").0, 0x10_0000, "{name}: PVH entry");
            }
            "no-pvh-note.elf" => {
                assert!(r.is_ok(), "{name}");
                assert!(matches!(elf::load(&blob, &memory()), Err(crate::image::ImageError::NoPvhNote { .. })));
            }
            _ => assert!(r.is_err(), "{name} must be refused"),
        }
    }
    let kernel = Blob { name: "kernel".into(), bytes: Cow::Owned(elf_seeds().remove(0)) };
    assert!(elf::validate(&kernel).is_ok());
}
