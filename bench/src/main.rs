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
    /// Guest rows: median over the median of the floor measured in the same guest that
    /// this path must pay: the address-space switch for cross-address-space rows, the
    /// null kernel entry otherwise. None for host rows.
    pub ratio_to_floor: Option<f64>,
    /// The name of that floor scenario.
    pub floor: Option<String>,
    /// Measured runs behind min, median and p99.
    pub samples: Option<u64>,
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
    let floor_of = |placement: &str| {
        let want = if placement == "cross-as" { "floor-cross-as" } else { "floor-same-as" };
        scenarios.iter().find(|x| format!("{}-{}", x.path, x.placement) == want).map(|x| (x.name.clone(), x.median_ns))
    };
    let floors: Vec<_> = scenarios.iter().map(|x| floor_of(&x.placement)).collect();
    for (x, f) in scenarios.iter_mut().zip(floors).filter(|(x, _)| x.placement != "host") {
        if let Some((name, ns)) = f {
            x.ratio_to_floor = Some(x.median_ns / ns);
            x.floor = Some(name);
        }
    }
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
