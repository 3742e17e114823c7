//! `bench`: boots l4vmm with the benchmark servers, measures every IPC path (cycles from
//! the guest's rdtsc, ring-0 instructions from l4vmm's counter), measures Linux baselines
//! on the host in the same run, and writes results.json, results.md and SVG plots.

mod guest;
mod linux;
mod report;
mod uring;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use indicatif::ProgressBar;

/// Measure every IPC path side by side.
#[derive(Parser, Debug)]
#[command(name = "bench", version)]
struct Args {
    /// The short run (under a minute): transfers up to 1 MiB (copies up to 64 KiB), fewer
    /// samples. Without it: transfers up to 64 MiB and more samples (minutes on PVM).
    #[arg(long)]
    quick: bool,
    /// Where to write results.json, results.md and the plots.
    #[arg(long, value_name = "DIR", default_value = "bench-results")]
    out: PathBuf,
    /// vCPUs for the guest (2 or more adds cross-vCPU and ring-polling scenarios).
    #[arg(long, value_name = "N", default_value_t = 2)]
    vcpus: u32,
}

/// One measured scenario (the shape of results.json's "scenarios" entries).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Scenario {
    pub name: String,
    pub path: String,
    pub placement: String,
    pub size_bytes: u64,
    pub batch: u64,
    pub median_ns: f64,
    pub p99_ns: f64,
    pub min_ns: f64,
    pub ops_per_sec: f64,
    pub ring0_instructions_per_op: Option<f64>,
    /// Guest rows: median over the floor measured in the same guest that a round trip
    /// of this placement must pay (see [`floors`]). None for host rows.
    pub ratio_to_floor: Option<f64>,
    /// How that floor is made of the floor rows, e.g. "2 x null-syscall-0".
    pub floor: Option<String>,
    /// The floor in ring-0 instructions, where l4vmm counted the floor rows.
    pub floor_ring0_instructions: Option<f64>,
    /// Ring-0 instructions per operation over the floor's (host-independent).
    pub ring0_ratio_to_floor: Option<f64>,
    /// Measured runs behind min, median and p99.
    pub samples: Option<u64>,
}

/// The floor a round trip must pay, per placement, from the floor rows measured in the
/// same guest: it enters the kernel twice (2 x `null-syscall`: same address space, and
/// across vCPUs, where each side enters once), and across address spaces it also switches
/// them there and back (`as-switch` is one entry that does both switches: the floor is
/// `null-syscall` + `as-switch`). Each guest row gets its ratio to that floor, in ns and,
/// where l4vmm counted both, in ring-0 instructions. Ring rows are per request.
pub fn floors(scenarios: &mut [Scenario]) {
    let row = |name: &str| scenarios.iter().find(|x| x.path == "floor" && x.name.starts_with(name)).cloned();
    let (Some(null), Some(as_switch)) = (row("null-syscall"), row("as-switch")) else { return };
    let two = |a: &Scenario, b: &Scenario| {
        let label = if a.name == b.name { format!("2 x {}", a.name) } else { format!("{} + {}", a.name, b.name) };
        let ins = a.ring0_instructions_per_op.zip(b.ring0_instructions_per_op).map(|(x, y)| x + y);
        (label, a.median_ns + b.median_ns, ins)
    };
    let same = two(&null, &null);
    let cross = two(&null, &as_switch);
    for x in scenarios.iter_mut().filter(|x| x.placement != "host") {
        let (label, ns, ins) = if x.placement == "cross-as" { cross.clone() } else { same.clone() };
        x.ratio_to_floor = Some(x.median_ns / ns);
        x.ring0_ratio_to_floor = x.ring0_instructions_per_op.zip(ins).map(|(a, f)| a / f);
        x.floor_ring0_instructions = ins;
        x.floor = Some(label);
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.vcpus == 0 {
        eprintln!("bench: error: --vcpus must be at least 1");
        return ExitCode::from(2);
    }
    let steps = 3;
    let bar = ProgressBar::new(steps);
    // The host baselines first: after the guest's large transfers this host ran spinning
    // and polling loops several times slower for a while (see docs/DECISIONS.md).
    bar.set_message("linux baselines");
    let mut host = linux::run(args.quick);
    let io_uring = match uring::run(args.quick) {
        Ok(rows) => {
            host.extend(rows);
            "ok".to_string()
        }
        Err(e) => {
            bar.println(format!("bench: io_uring baseline skipped: {e}"));
            format!("unavailable: {e}")
        }
    };
    bar.inc(1);
    bar.set_message("guest");
    let guest = match guest::run(args.vcpus, args.quick) {
        Ok(g) => g,
        Err(e) => {
            bar.abandon();
            eprintln!("bench: error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut scenarios = guest.scenarios.clone();
    scenarios.extend(host);
    bar.inc(1);
    floors(&mut scenarios);
    bar.set_message("report");
    let r = report::write(&args.out, &guest, &scenarios, args.vcpus, &io_uring);
    bar.inc(1);
    bar.finish_and_clear();
    match r {
        Ok(()) => {
            println!("bench: {} scenarios; results in {}", scenarios.len(), args.out.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bench: error: {e}");
            ExitCode::FAILURE
        }
    }
}
