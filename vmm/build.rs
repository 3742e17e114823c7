//! Builds the freestanding guest with nested cargo runs, packs the servers into the boot
//! archive, and embeds the default boot image (kernel + archive) into l4vmm.
//!
//! The guest crates are built with their own directory as cwd, so their
//! `.cargo/config.toml` (target, rustflags, panic=abort) applies, into `<target>/guest`,
//! with the outer build's environment scrubbed: variables such as
//! `CARGO_ENCODED_RUSTFLAGS` or `TARGET` would otherwise leak into the guest build (see
//! ../shared/ENVIRONMENT.md). The guest is always built in release mode: its cost is
//! counted in emulated ring-0 instructions.
use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The servers in the default boot archive, root task first.
const SERVERS: [&str; 15] = [
    "root",
    "echo",
    "client",
    "faulty",
    "spinner",
    "ipcbench",
    "ipctest",
    "ringsrv",
    "ringtest",
    "fuzz",
    "crashtest",
    "quotatest",
    "nametest",
    "tracetest",
    "cowtest",
];

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let root = manifest.parent().expect("vmm/ has a parent").to_path_buf();
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    // OUT_DIR = <target>/<profile>/build/<pkg>-<hash>/out
    let target_dir =
        out_dir.ancestors().nth(4).map(|t| t.join("guest")).unwrap_or_else(|| root.join("target").join("guest"));

    for p in [
        "guest-kernel/src",
        "guest-kernel/Cargo.toml",
        "guest-kernel/link.ld",
        "guest-kernel/build.rs",
        "guest-kernel/.cargo/config.toml",
        "guest-servers",
        "abi/src",
        "abi/Cargo.toml",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(p).display());
    }

    build_guest(&root.join("guest-kernel"), &target_dir, &["--features", "guest", "--bin", "l4-kernel"]);
    build_guest(&root.join("guest-servers"), &target_dir, &[]);
    let bin_dir = target_dir.join("x86_64-unknown-linux-gnu/release");
    let kernel = bin_dir.join("l4-kernel");
    assert!(kernel.is_file(), "guest build did not produce {}", kernel.display());

    // The archive carries the servers without debug info (a tenth of the size, so l4vmm
    // copies less into guest RAM at boot); the full ELFs stay in bin_dir for gdb.
    let files: Vec<(&str, Vec<u8>)> = SERVERS
        .iter()
        .map(|s| {
            let full = bin_dir.join(s);
            let stripped = out_dir.join(format!("{s}.stripped"));
            let ok = Command::new("objcopy")
                .arg("--strip-debug")
                .arg(&full)
                .arg(&stripped)
                .status()
                .is_ok_and(|st| st.success());
            let p = if ok {
                stripped
            } else {
                println!("cargo:warning=objcopy --strip-debug failed: the boot archive carries debug info");
                full
            };
            (*s, std::fs::read(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display())))
        })
        .collect();
    let archive = out_dir.join("boot.cpio");
    std::fs::write(&archive, cpio_newc(&files)).expect("writing the boot archive");

    println!("cargo:rustc-env=L4_KERNEL_ELF={}", kernel.display());
    println!("cargo:rustc-env=L4_BOOT_ARCHIVE={}", archive.display());
    println!("cargo:rustc-env=L4_GUEST_BIN_DIR={}", bin_dir.display());
}

/// A cpio "newc" archive (the format of Linux's initramfs) of regular files.
fn cpio_newc(files: &[(&str, Vec<u8>)]) -> Vec<u8> {
    fn entry(out: &mut Vec<u8>, ino: usize, name: &str, mode: u32, data: &[u8]) {
        let header = format!(
            "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            ino,
            mode,
            0,
            0,
            1,
            0,
            data.len(),
            0,
            0,
            0,
            0,
            name.len() + 1,
            0
        );
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        while out.len() % 4 != 0 {
            out.push(0);
        }
        out.extend_from_slice(data);
        while out.len() % 4 != 0 {
            out.push(0);
        }
    }
    let mut out = Vec::new();
    for (i, (name, data)) in files.iter().enumerate() {
        entry(&mut out, i + 1, name, 0o100_755, data);
    }
    entry(&mut out, 0, "TRAILER!!!", 0, &[]);
    out
}

fn build_guest(dir: &Path, target_dir: &Path, args: &[&str]) {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(dir).args(["build", "--release", "--target-dir"]).arg(target_dir).args(args);
    for (key, _) in env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        let keep = matches!(key, "CARGO_HOME" | "CARGO_NET_OFFLINE" | "CARGO_TERM_COLOR");
        let scrub = (key.starts_with("CARGO_") && !keep)
            || matches!(
                key,
                "RUSTFLAGS"
                    | "RUSTDOCFLAGS"
                    | "TARGET"
                    | "HOST"
                    | "PROFILE"
                    | "OUT_DIR"
                    | "OPT_LEVEL"
                    | "DEBUG"
                    | "NUM_JOBS"
                    | "RUSTC_WRAPPER"
                    | "RUSTC_WORKSPACE_WRAPPER"
                    | "CARGO_MAKEFLAGS"
            );
        if scrub {
            cmd.env_remove(key);
        }
    }
    let status = cmd.status().unwrap_or_else(|e| panic!("cannot run cargo for {}: {e}", dir.display()));
    assert!(status.success(), "building the guest in {} failed ({status})", dir.display());
}
