//! The guest side: boots l4vmm with echo, ringsrv and ipcbench, and reads ipcbench's table.

use std::path::PathBuf;
use std::process::Command;

use crate::Scenario;

/// What the guest run measured and where it ran.
#[derive(Debug, Clone)]
pub struct Guest {
    pub scenarios: Vec<Scenario>,
    pub tsc_khz: u64,
    /// "pvm", "hardware" or "hardware-nested".
    pub host_kvm: String,
    /// l4vmm's own description of the host's KVM.
    pub host_kvm_detail: String,
    pub kernel_entry: String,
}

/// l4vmm next to this binary (same profile). Under `cargo run`/`cargo test` (CARGO is set)
/// it is brought up to date first, so a stale l4vmm is never measured.
fn l4vmm() -> Result<PathBuf, String> {
    let me = std::env::current_exe().map_err(|e| format!("cannot find myself: {e}"))?;
    let dir = me.parent().ok_or("no directory")?;
    // Tests run from target/<profile>/deps.
    let dir = if dir.ends_with("deps") { dir.parent().ok_or("no directory")? } else { dir };
    let bin = dir.join("l4vmm");
    if let Ok(cargo) = std::env::var("CARGO") {
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--quiet", "-p", "l4vmm"]);
        if dir.ends_with("release") {
            cmd.arg("--release");
        }
        let st = cmd.status().map_err(|e| format!("cannot run cargo to build l4vmm: {e}"))?;
        if !st.success() {
            return Err("building l4vmm failed".into());
        }
    }
    if !bin.is_file() {
        return Err(format!("l4vmm is not at {}: build it with `cargo build --release -p l4vmm`", bin.display()));
    }
    Ok(bin)
}

/// Maps ipcbench's row names to results.json's path, scenario name and placement (ring
/// rows cross vCPUs when ringsrv is pinned to another one, see `run`).
fn path_of(row: &str) -> Option<(&'static str, &'static str, &'static str)> {
    Some(match row {
        "null" => ("floor", "null-syscall", "same-as"),
        "null+as" => ("floor", "as-switch", "cross-as"),
        "register@same" => ("sync", "call-reply-same-as", "same-as"),
        "register" => ("sync", "call-reply", "cross-as"),
        "register@vcpu" => ("sync", "call-reply-cross-vcpu", "cross-vcpu"),
        "ipcbuf" => ("ipcbuf", "call-reply-ipcbuf", "cross-as"),
        "copy" => ("copy", "copy", "cross-as"),
        "cow" => ("cow", "copy-on-write", "cross-as"),
        "shared" => ("shared", "shared-region", "cross-as"),
        "ring" => ("ring", "ring-kernel-entry", "cross-as"),
        // From a thread on ringsrv's vCPU: the synchronous round trip's placement.
        "ring@srv" => ("ring", "ring-kernel-entry-same-vcpu", "cross-as"),
        "ring-poll" => ("ring-poll", "ring-polling", "cross-as"),
        _ => return None,
    })
}

/// Boots the guest; `quick` keeps ipcbench's transfers at 1 MiB or less (its default),
/// otherwise it runs its full set (up to 64 MiB, more samples) in a bigger guest.
pub fn run(vcpus: u32, quick: bool) -> Result<Guest, String> {
    let bin = l4vmm()?;
    let mut cmdline = String::from("run=echo,ringsrv,ipcbench");
    if vcpus >= 2 {
        cmdline.push_str(" pin=ringsrv:1");
    }
    // The full run maps 64 MiB twice (a staging buffer and a shared region).
    let mem = if quick { "256" } else { "512" };
    if !quick {
        cmdline.push_str(" arg=ipcbench:1");
    }
    let out = Command::new(&bin)
        .args(["--vcpus", &vcpus.to_string(), "--mem", mem, "--timeout", "900", "--cmdline", &cmdline])
        .env("RUST_LOG", "info")
        .output()
        .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(format!("l4vmm exited with {}:\n{stdout}\n{stderr}", out.status));
    }
    let tsc_khz = stderr
        .lines()
        .find_map(|l| l.split("guest TSC: ").nth(1))
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .ok_or("l4vmm did not report the guest TSC frequency")?;
    let host_kvm_detail =
        stderr.lines().find_map(|l| l.split("host KVM: ").nth(1)).unwrap_or("not reported").to_string();
    // "hardware-nested": kvm_amd/kvm_intel on a host whose own CPU is virtual (l4vmm reads
    // CPUID's hypervisor bit), so its cycle counts are never mistaken for bare metal's.
    let host_kvm = match (host_kvm_detail.starts_with("PVM"), host_kvm_detail.contains("(nested")) {
        (true, _) => "pvm",
        (false, true) => "hardware-nested",
        (false, false) => "hardware",
    }
    .to_string();
    let kernel_entry = if stdout.contains("l4: user entry: syscall") { "syscall" } else { "int3" }.to_string();
    let ns = |cycles: f64| cycles * 1e6 / tsc_khz as f64;
    let mut scenarios = Vec::new();
    for line in stdout.lines().filter_map(|l| l.strip_prefix("ipcbench: ")) {
        let w: Vec<&str> = line.split_whitespace().collect();
        if w.len() != 7 {
            continue;
        }
        let Some((path, name, placement)) = path_of(w[0]) else { continue };
        let (Ok(n), Ok(min), Ok(median), Ok(p99), Ok(samples)) =
            (w[1].parse::<u64>(), w[2].parse::<f64>(), w[3].parse::<f64>(), w[4].parse::<f64>(), w[6].parse::<u64>())
        else {
            continue;
        };
        let ring = path.starts_with("ring");
        // A ring request is one submission entry (the ABI's Sqe).
        let sqe = std::mem::size_of::<l4_abi::ring::Sqe>() as u64;
        let (size, batch) = if ring { (sqe, n) } else { (n, 1) };
        // With 2+ vCPUs ringsrv is pinned to vCPU 1, so both ring paths cross vCPUs
        // (but the `ring@srv` rows, run from a thread on that vCPU).
        let placement = if ring && vcpus >= 2 && w[0] != "ring@srv" { "cross-vcpu" } else { placement };
        scenarios.push(Scenario {
            name: format!("{name}-{n}"),
            path: path.to_string(),
            placement: placement.to_string(),
            size_bytes: size,
            batch,
            median_ns: ns(median),
            p99_ns: ns(p99),
            min_ns: ns(min),
            ops_per_sec: 1e9 / ns(median),
            ring0_instructions_per_op: w[5].parse::<f64>().ok(),
            ratio_to_floor: None,
            floor: None,
            floor_ring0_instructions: None,
            ring0_ratio_to_floor: None,
            samples: Some(samples),
        });
    }
    if scenarios.is_empty() {
        return Err(format!("ipcbench printed no rows:\n{stdout}"));
    }
    Ok(Guest { scenarios, tsc_khz, host_kvm, host_kvm_detail, kernel_entry })
}
