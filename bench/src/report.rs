//! results.json, results.md and the SVG plots.

use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::*;

use crate::guest::Guest;
use crate::Scenario;

fn git_commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// Whether the machine bench ran on has CPUID's hypervisor bit (its CPU is virtual).
fn host_cpu_virtual() -> bool {
    std::fs::read_to_string("/proc/cpuinfo")
        .map(|s| s.lines().any(|l| l.starts_with("flags") && l.split_whitespace().any(|f| f == "hypervisor")))
        .unwrap_or(false)
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name").map(|v| v.trim_start_matches([' ', '\t', ':']).to_string()))
        })
        .unwrap_or_else(|| "unknown".into())
}

pub fn write(dir: &Path, guest: &Guest, s: &[Scenario], vcpus: u32, io_uring: &str) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let env = serde_json::json!({
        "cpu": cpu_model(),
        "host_kvm": guest.host_kvm,
        "host_kvm_detail": guest.host_kvm_detail,
        "host_cpu_virtual": host_cpu_virtual(),
        "linux_io_uring": io_uring,
        "vcpus": vcpus,
        "tsc_khz": guest.tsc_khz,
        "kernel_entry": guest.kernel_entry,
        "git_commit": git_commit(),
    });
    let cow = crossover(s, "cow");
    let shared = crossover(s, "shared");
    let crossovers = serde_json::json!({ "cow_beats_copy_from_bytes": cow, "shared_beats_copy_from_bytes": shared });
    let json = serde_json::json!({ "environment": env, "crossovers": crossovers, "scenarios": s });
    let text = serde_json::to_string_pretty(&json).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("results.json"), text).map_err(|e| format!("results.json: {e}"))?;

    let mut md = String::new();
    let _ = writeln!(md, "# l4 IPC benchmark\n");
    let _ = writeln!(
        md,
        "Host KVM: {}, {vcpus} vCPUs, guest TSC {} kHz, user entry: {}, CPU: {}.\n",
        guest.host_kvm_detail,
        guest.tsc_khz,
        guest.kernel_entry,
        cpu_model()
    );
    let from = |c: Option<u64>| c.map_or("not within the measured sizes".to_string(), |b| format!("from {b} bytes"));
    let _ = writeln!(
        md,
        "Measured crossovers: copy-on-write beats copying {}; a shared region beats copying {}.\n",
        from(cow),
        from(shared)
    );
    let _ = writeln!(
        md,
        "floor: what a round trip of the row's placement must pay, measured in the same guest: two null \
         kernel entries (`2 x null-syscall-0`), and across address spaces one of them switching the address \
         space there and back (`null-syscall-0 + as-switch-0`). x floor: the median over the floor's; \
         ring-0 x floor: the same in ring-0 instructions (host-independent; n/a where l4vmm could not count). \
         Ring rows: per request of a batch; ring-kernel-entry-same-vcpu from a thread on the ring server's \
         vCPU.\n"
    );
    let _ = writeln!(
        md,
        "| scenario | path | placement | bytes | batch | median ns | p99 ns | min ns | ops/s | ring-0 instructions/op | floor | x floor | ring-0 x floor | samples |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let ratio =
        |r: Option<f64>| r.map_or("n/a".into(), |r| if r < 0.1 { format!("{r:.4}") } else { format!("{r:.2}") });
    for x in s {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {} | {} | {} | {} | {} |",
            x.name,
            x.path,
            x.placement,
            x.size_bytes,
            x.batch,
            x.median_ns,
            x.p99_ns,
            x.min_ns,
            x.ops_per_sec,
            x.ring0_instructions_per_op.map_or("n/a".into(), |n| format!("{n:.0}")),
            match (&x.floor, x.floor_ring0_instructions) {
                (Some(f), Some(i)) => format!("{f} ({i:.0} ins)"),
                (Some(f), None) => f.clone(),
                _ => "n/a".into(),
            },
            ratio(x.ratio_to_floor),
            ratio(x.ring0_ratio_to_floor),
            x.samples.map_or("n/a".into(), |n| n.to_string())
        );
    }
    std::fs::write(dir.join("results.md"), md).map_err(|e| format!("results.md: {e}"))?;
    plot_sizes(&dir.join("latency-vs-size.svg"), s, [("cow", cow), ("shared", shared)])
        .map_err(|e| format!("plot: {e}"))?;
    plot_batches(&dir.join("throughput-vs-batch.svg"), s).map_err(|e| format!("plot: {e}"))?;
    Ok(())
}

/// The smallest size measured for both `path` and copy at which `path` has the lower median.
fn crossover(s: &[Scenario], path: &str) -> Option<u64> {
    let mut sizes: Vec<u64> = s.iter().filter(|x| x.path == "copy").map(|x| x.size_bytes).collect();
    sizes.sort_unstable();
    let median = |p: &str, size: u64| s.iter().find(|x| x.path == p && x.size_bytes == size).map(|x| x.median_ns);
    sizes.into_iter().find(|&n| matches!((median(path, n), median("copy", n)), (Some(a), Some(c)) if a < c))
}

fn plot_sizes(
    path: &Path,
    s: &[Scenario],
    crossovers: [(&str, Option<u64>); 2],
) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, (900, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    // Register and IPC-buffer messages (across address spaces) beside the transfer paths.
    let series: Vec<(&str, Vec<(f64, f64)>)> = ["sync", "ipcbuf", "copy", "cow", "shared"]
        .iter()
        .map(|p| {
            (
                *p,
                s.iter()
                    .filter(|x| x.path == *p && x.size_bytes > 0 && x.placement == "cross-as")
                    .map(|x| ((x.size_bytes as f64).log2(), x.median_ns.log10()))
                    .collect(),
            )
        })
        .collect();
    let (xmax, ymax) =
        series.iter().flat_map(|(_, v)| v).fold((1.0f64, 1.0f64), |(a, b), (x, y)| (a.max(*x), b.max(*y)));
    let mut chart = ChartBuilder::on(&root)
        .caption("round-trip latency vs message size (log2 bytes, log10 ns)", ("sans-serif", 20))
        .margin(20)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..xmax + 1.0, 0.0..ymax + 1.0)?;
    chart.configure_mesh().x_desc("log2(bytes)").y_desc("log10(ns)").draw()?;
    for (i, (name, pts)) in series.into_iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        chart.draw_series(pts.into_iter().map(|p| Circle::new(p, 3, color.filled())))?;
    }
    for (i, (name, at)) in crossovers.into_iter().enumerate() {
        let Some(bytes) = at else { continue };
        let x = (bytes as f64).log2();
        let color = Palette99::pick(i + 1).to_rgba();
        chart
            .draw_series(LineSeries::new(vec![(x, 0.0), (x, ymax + 1.0)], color.stroke_width(1)))?
            .label(format!("{name} beats copy from {bytes} B"))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart.configure_series_labels().border_style(BLACK).draw()?;
    root.present()?;
    Ok(())
}

fn plot_batches(path: &Path, s: &[Scenario]) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, (900, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    // One flat line per synchronous placement: a register round trip, one request each.
    let sync: Vec<(String, f64)> = s
        .iter()
        .filter(|x| x.path == "sync" && x.size_bytes == 0)
        .map(|x| (format!("sync call/reply {}", x.placement), x.ops_per_sec))
        .collect();
    let series: Vec<(&str, Vec<(f64, f64)>)> = ["ring", "ring-poll", "linux-io_uring"]
        .iter()
        .map(|p| {
            (*p, s.iter().filter(|x| x.path == *p).map(|x| ((x.batch as f64).log2(), x.ops_per_sec.log10())).collect())
        })
        .collect();
    let ymax =
        series.iter().flat_map(|(_, v)| v).map(|p| p.1).chain(sync.iter().map(|x| x.1.log10())).fold(1.0, f64::max);
    let mut chart = ChartBuilder::on(&root)
        .caption("requests per second vs batch size (log2 batch, log10 requests/s)", ("sans-serif", 20))
        .margin(20)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..9.0, 0.0..ymax + 1.0)?;
    chart.configure_mesh().x_desc("log2(batch)").y_desc("log10(requests/s)").draw()?;
    for (i, (name, pts)) in series.into_iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(pts, color.stroke_width(2)))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    for (i, (name, ops)) in sync.into_iter().enumerate().filter(|(_, (_, ops))| *ops > 0.0) {
        let color = Palette99::pick(5 + i).to_rgba();
        chart
            .draw_series(LineSeries::new(vec![(0.0, ops.log10()), (8.0, ops.log10())], color.stroke_width(2)))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart.configure_series_labels().border_style(BLACK).draw()?;
    root.present()?;
    Ok(())
}
