//! `hwkvm`: run a command (l4vmm by default) on a hardware-style KVM (kvm_amd) host that
//! QEMU's TCG emulates, on any Linux machine with QEMU and Debian's apt.
//!
//! ```text
//! cargo build --release
//! cargo run --release -p hwkvm -- -- l4vmm --vcpus 8
//! cargo run --release -p hwkvm -- --file ./my-server -- l4vmm --module /root/my-server
//! ```

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use hwkvm::boot::{self, Options, Scenario, Status};
use hwkvm::image::Image;
use hwkvm::packages;

#[derive(Parser)]
#[command(about = "Run a command on a nested kvm_amd host (QEMU TCG with emulated SVM); l4vmm is on its PATH")]
struct Cli {
    /// CPUs of the nested host.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=16))]
    smp: u32,
    /// RAM of the nested host in MiB.
    #[arg(long, default_value_t = 3072, value_parser = clap::value_parser!(u32).range(512..=65536))]
    mem: u32,
    /// Seconds the command may run inside.
    #[arg(long, default_value_t = 900)]
    timeout: u64,
    /// The l4vmm to run (default: the one next to this binary, same profile).
    #[arg(long)]
    l4vmm: Option<PathBuf>,
    /// A host file to copy in: SRC or SRC:DEST (default DEST: /root/<file name>).
    #[arg(long, value_name = "SRC[:DEST]")]
    file: Vec<String>,
    /// A host program to copy in with the shared libraries it needs: SRC or SRC:DEST
    /// (default DEST: /usr/bin/<file name>).
    #[arg(long, value_name = "SRC[:DEST]")]
    program: Vec<String>,
    /// A host directory tree to copy in at the same path.
    #[arg(long, value_name = "DIR")]
    tree: Vec<PathBuf>,
    /// Where the Debian packages are cached (default: <target>/hwkvm).
    #[arg(long)]
    cache: Option<PathBuf>,
    /// An extra QEMU argument (repeatable), e.g. `--qemu-arg=-gdb --qemu-arg=tcp::1234`.
    #[arg(long, allow_hyphen_values = true)]
    qemu_arg: Vec<String>,
    /// The command, run by the host's shell in /root (default: l4vmm).
    #[arg(last = true)]
    command: Vec<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("hwkvm: {e}");
            ExitCode::from(2)
        }
    }
}

fn target_dir() -> Option<PathBuf> {
    let me = std::env::current_exe().ok()?;
    // <target>/<profile>/hwkvm
    Some(me.parent()?.parent()?.to_path_buf())
}

fn run(cli: Cli) -> Result<ExitCode, String> {
    let profile_dir = std::env::current_exe().ok().and_then(|p| p.parent().map(Path::to_path_buf));
    let l4vmm = cli
        .l4vmm
        .clone()
        .or_else(|| profile_dir.map(|d| d.join("l4vmm")))
        .ok_or("cannot find l4vmm: pass --l4vmm PATH")?;
    if !l4vmm.is_file() {
        return Err(format!("{} does not exist: build it (cargo build --release) or pass --l4vmm", l4vmm.display()));
    }
    let cache = cli.cache.clone().or_else(|| target_dir().map(|t| t.join("hwkvm"))).ok_or("pass --cache DIR")?;
    eprintln!("hwkvm: preparing the nested host in {}", cache.display());
    let pk = packages::prepare(&cache).map_err(|e| e.to_string())?;
    let work = cache.join(format!("run-{}", std::process::id()));
    let mut img = Image::new(&pk, &work).map_err(|e| e.to_string())?;
    img.program("/bin/l4vmm", &l4vmm, false).map_err(|e| e.to_string())?;
    img.program("/usr/bin/gdb", &pk.gdb(), false).map_err(|e| e.to_string())?;
    let split = |f: &str, dir: &str| -> Result<(PathBuf, String), String> {
        match f.split_once(':') {
            Some((s, d)) => Ok((PathBuf::from(s), d.to_string())),
            None => {
                let p = PathBuf::from(f);
                let name = p.file_name().map(|n| n.to_string_lossy().to_string()).ok_or(format!("bad path {f}"))?;
                Ok((p, format!("{dir}/{name}")))
            }
        }
    };
    for f in &cli.file {
        let (src, dest) = split(f, "/root")?;
        if !src.is_file() {
            return Err(format!("--file {}: no such file", src.display()));
        }
        img.file(&dest, &src, 0o755);
    }
    for f in &cli.program {
        let (src, dest) = split(f, "/usr/bin")?;
        img.program(&dest, &src, false).map_err(|e| e.to_string())?;
    }
    for t in &cli.tree {
        let abs = t.canonicalize().map_err(|e| format!("--tree {}: {e}", t.display()))?;
        img.tree(&abs.to_string_lossy(), &abs).map_err(|e| e.to_string())?;
    }
    let command = if cli.command.is_empty() {
        "l4vmm".to_string()
    } else {
        cli.command.iter().map(|a| boot::quote(a)).collect::<Vec<_>>().join(" ")
    };
    let sc = Scenario {
        name: "command".into(),
        script: format!("cd /root\n{command}\n"),
        timeout: Duration::from_secs(cli.timeout),
    };
    eprintln!("hwkvm: booting ({} CPUs, {} MiB) to run: {command}", cli.smp, cli.mem);
    let opts = Options { smp: cli.smp, mem_mib: cli.mem, verbose: false, qemu_args: cli.qemu_arg.clone() };
    let report = boot::run(&pk, &img, &[sc], &opts, &work).map_err(|e| e.to_string())?;
    let o = &report.outcomes[0];
    if report.problem.is_none() && o.status == Status::Exited(0) {
        let _ = std::fs::remove_dir_all(&work);
    } else {
        eprintln!("hwkvm: the console and the raw results are in {}", work.display());
    }
    eprintln!("hwkvm: host: {}", report.host);
    use std::io::Write;
    let _ = std::io::stdout().write_all(&o.stdout);
    let _ = std::io::stderr().write_all(&o.stderr);
    eprintln!("hwkvm: {:?} after {:.1} s inside, {:.1} s in all", o.status, o.seconds, report.seconds);
    if let Some(p) = &report.problem {
        eprintln!("hwkvm: {p}");
    }
    Ok(match o.status {
        Status::Exited(c) => ExitCode::from(c.clamp(0, 255) as u8),
        Status::TimedOut => ExitCode::from(124),
        Status::NotRun => ExitCode::from(2),
    })
}
