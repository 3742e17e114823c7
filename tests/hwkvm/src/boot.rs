//! Boots the nested host once and runs scenarios in it, one after another.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;

use crate::image::Image;
use crate::packages::Packages;
use crate::{Error, Result};

/// One thing to run inside the host: a shell script (busybox `sh`), with stdin from
/// /dev/null, in a fresh directory under /tmp, killed after `timeout`.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    pub script: String,
    pub timeout: Duration,
}

/// How a scenario ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// The script exited with this status (128 + N: killed by signal N).
    Exited(i32),
    /// Killed when its timeout ran out.
    TimedOut,
    /// Never ran: the host stopped before it (see [`Report::problem`]).
    NotRun,
}

/// What one scenario printed and how it ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub name: String,
    pub status: Status,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// Wall time inside the host (its own clock, which runs at TCG's pace).
    pub seconds: f64,
}

/// Everything one boot produced.
#[derive(Debug, Clone)]
pub struct Report {
    /// What the host said about itself: kernel release, CPUs, KVM modules, whether its CPU
    /// reports the hypervisor bit.
    pub host: String,
    /// One per scenario, in order.
    pub outcomes: Vec<Outcome>,
    /// Why the host ended before running every scenario (deadline, QEMU died), if it did.
    pub problem: Option<String>,
    /// The host's console (its kernel log and anything unframed).
    pub console: String,
    /// Host wall time from QEMU's start to its end.
    pub seconds: f64,
}

/// How to boot the host.
#[derive(Debug, Clone)]
pub struct Options {
    /// CPUs of the nested host (QEMU `-smp`); each is a TCG thread.
    pub smp: u32,
    /// Its RAM in MiB.
    pub mem_mib: u32,
    /// Progress lines on stderr as scenarios finish.
    pub verbose: bool,
    /// More QEMU arguments, e.g. `-gdb tcp::1234` to debug the nested host itself (TCG's
    /// gdbstub sees the nested guest's instructions too: a way to catch what a guest does
    /// right before KVM on AMD resets it).
    pub qemu_args: Vec<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options { smp: 2, mem_mib: 3072, verbose: false, qemu_args: Vec::new() }
    }
}

/// QEMU's accelerator for the nested host (HWKVM_ACCEL overrides, for experiments).
const ACCEL: &str = "tcg,thread=multi";

/// The emulated CPU: AMD with SVM and nested paging (HWKVM_CPU overrides, for experiments).
const CPU: &str = "EPYC,+svm,+npt";

/// kvm-amd's parameters in the nested host.
const KVM_AMD_PARAMS: &str = "";

/// The seconds QEMU gets beyond the scenarios' own timeouts (firmware, kernel boot,
/// unpacking the initramfs, loading modules).
const BOOT_ALLOWANCE: Duration = Duration::from_secs(240);

/// The host's init prints a heartbeat on its console this often...
const HEARTBEAT_SECS: u32 = 30;

/// ...and a host whose console stays silent this long has hung: its emulated SVM can
/// wedge the host's own kernel (docs/HOSTS.md), which no timeout inside can undo. QEMU is
/// killed then and the scenarios not finished are reported as not run.
const SILENCE: Duration = Duration::from_secs(150);

/// Boots `image` (plus the init script and the scenarios) and runs `scenarios` in order.
/// `work` receives the archive, the console and the result channel's raw log.
pub fn run(packages: &Packages, image: &Image, scenarios: &[Scenario], opts: &Options, work: &Path) -> Result<Report> {
    std::fs::create_dir_all(work).map_err(Error::io(format!("creating {}", work.display())))?;
    let mut image = image.clone();
    image.bytes("/init", init_script(image.modules(), scenarios), 0o755);
    for (i, s) in scenarios.iter().enumerate() {
        image.bytes(&format!("/scenarios/{i}.sh"), s.script.clone(), 0o755);
    }
    let archive = work.join("initramfs.cpio");
    image.write(&archive)?;
    let console = work.join("console.log");
    let data = work.join("results.log");
    let _ = std::fs::remove_file(&console);
    let _ = std::fs::remove_file(&data);

    let mut cmd = Command::new("qemu-system-x86_64");
    let accel = std::env::var("HWKVM_ACCEL").unwrap_or_else(|_| ACCEL.to_string());
    let cpu = std::env::var("HWKVM_CPU").unwrap_or_else(|_| CPU.to_string());
    cmd.args(["-accel", &accel, "-cpu", &cpu])
        .args(["-smp", &opts.smp.to_string(), "-m", &opts.mem_mib.to_string()])
        .args(["-nodefaults", "-display", "none", "-no-reboot"])
        .arg("-kernel")
        .arg(packages.vmlinuz())
        .arg("-initrd")
        .arg(&archive)
        // nokaslr: the host kernel's text stays at 0xffffffff81000000, clear of the
        // nested l4 kernel's addresses, so a gdb on QEMU (`qemu_args`) can break in either.
        .args(["-append", "console=ttyS0 quiet panic=-1 nokaslr rdinit=/init"])
        .args(&opts.qemu_args)
        .arg("-serial")
        .arg(format!("file:{}", console.display()))
        .arg("-serial")
        .arg(format!("file:{}", data.display()))
        // For a look at a host that hangs: `socat - UNIX-CONNECT:<work>/monitor.sock`.
        .arg("-monitor")
        .arg(format!("unix:{},server=on,wait=off", work.join("monitor.sock").display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = cmd.spawn().map_err(Error::io("starting qemu-system-x86_64"))?;
    let deadline = scenarios.iter().map(|s| s.timeout).sum::<Duration>() + BOOT_ALLOWANCE;
    let mut reported = 0;
    let mut problem = None;
    let (mut heard, mut heard_at) = (0, Instant::now());
    let status = loop {
        if let Some(st) = child.try_wait().map_err(Error::io("waiting for QEMU"))? {
            break Some(st);
        }
        if opts.verbose {
            reported = progress(&data, scenarios, reported);
        }
        // Only heartbeats and results count: a wedged host still prints RCU stall
        // warnings.
        let said = heartbeats(&console) + std::fs::metadata(&data).map(|m| m.len()).unwrap_or(0);
        if said != heard {
            (heard, heard_at) = (said, Instant::now());
        }
        let hung = heard_at.elapsed() > SILENCE;
        if hung || started.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            problem = Some(if hung {
                format!("the nested host hung: no heartbeat and no result for {} s", SILENCE.as_secs())
            } else {
                format!("the nested host did not finish within {} s", deadline.as_secs())
            });
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let seconds = started.elapsed().as_secs_f64();
    let qemu_err = {
        use std::io::Read;
        let mut s = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut s);
        }
        s
    };
    let console_text = String::from_utf8_lossy(&std::fs::read(&console).unwrap_or_default()).into_owned();
    let raw = std::fs::read(&data).unwrap_or_default();
    let parsed = parse(&String::from_utf8_lossy(&raw), scenarios);
    if opts.verbose {
        progress(&data, scenarios, reported);
    }
    let tail = || tail_lines(&console_text, 40);
    if parsed.host.is_empty() {
        let reason = match status {
            Some(st) if !st.success() => format!("QEMU exited with {st}: {}", qemu_err.trim()),
            _ => problem.clone().unwrap_or_else(|| "its init never reported (no result channel output)".into()),
        };
        return Err(Error::HostFailed { reason, console: tail() });
    }
    if let Some(m) = parsed.module_failure {
        return Err(Error::HostFailed {
            reason: format!("insmod {m} failed (no SVM in the emulated CPU?)"),
            console: tail(),
        });
    }
    if parsed.no_kvm {
        return Err(Error::HostFailed {
            reason: "the modules loaded but there is no /dev/kvm".into(),
            console: tail(),
        });
    }
    if problem.is_none() && !parsed.done {
        let panic_line = console_text.lines().find(|l| l.contains("Kernel panic - not syncing"));
        problem = Some(match status {
            _ if panic_line.is_some() => {
                format!("the nested host's kernel panicked: {}", panic_line.unwrap_or_default().trim())
            }
            // -no-reboot: a host kernel that resets itself (a triple fault) ends QEMU
            // with status 0.
            Some(st) if st.success() => "the nested host's kernel panicked or reset itself: QEMU ended \
                                          (-no-reboot) before the last scenario"
                .to_string(),
            Some(st) => format!("QEMU ended ({st}) before the last scenario: {}", qemu_err.trim()),
            None => "the host stopped early".into(),
        });
    }
    Ok(Report { host: parsed.host, outcomes: parsed.outcomes, problem, console: console_text, seconds })
}

/// How many heartbeats the host's console shows.
fn heartbeats(console: &Path) -> u64 {
    let text = std::fs::read(console).unwrap_or_default();
    text.windows(HEARTBEAT.len()).filter(|w| *w == HEARTBEAT.as_bytes()).count() as u64
}

const HEARTBEAT: &str = "--- heartbeat ";

/// Prints a line for each scenario that finished since `reported`; the new count.
fn progress(data: &Path, scenarios: &[Scenario], reported: usize) -> usize {
    let raw = std::fs::read(data).unwrap_or_default();
    let p = parse(&String::from_utf8_lossy(&raw), scenarios);
    let done: Vec<&Outcome> = p.outcomes.iter().filter(|o| o.status != Status::NotRun).collect();
    for o in done.iter().skip(reported) {
        // Straight to stderr: libtest does not capture it, so a test run shows progress.
        use std::io::Write;
        let line = format!(
            "hwkvm: [{}/{}] {}: {:?} after {:.1} s",
            reported + 1,
            scenarios.len(),
            o.name,
            o.status,
            o.seconds
        );
        let _ = writeln!(std::io::stderr().lock(), "{line}");
    }
    done.len().max(reported)
}

fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Single-quotes `s` for the shell.
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

fn init_script(modules: &[String], scenarios: &[Scenario]) -> String {
    let mut s = String::from(
        r#"#!/bin/sh
# The nested host's init: mount, load KVM, run each scenario, frame its output on ttyS1.
export PATH=/bin:/usr/bin:/sbin:/usr/sbin HOME=/root TMPDIR=/tmp
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
ip link set lo up 2>/dev/null
THP_OFF
D=/dev/ttyS1
stty -F $D raw -echo 2>/dev/null
"#,
    );
    // HWKVM_KVM_AMD_PARAMS: module parameters for kvm-amd (experiments, e.g. vgif=0).
    let amd_params = std::env::var("HWKVM_KVM_AMD_PARAMS").unwrap_or_else(|_| KVM_AMD_PARAMS.to_string());
    for m in modules {
        let params = if m.ends_with("kvm-amd.ko") { amd_params.as_str() } else { "" };
        s += &format!("insmod {m} {params} || echo \"=== MODFAIL {m}\" > $D\n");
    }
    s += r#"echo "=== HOST $(uname -r), $(nproc) CPUs, modules: $(ls /sys/module | grep -E '^kvm' | tr '\n' ' ')hypervisor bit: $(grep -c -w hypervisor /proc/cpuinfo) of $(nproc)" > $D
[ -c /dev/kvm ] || echo "=== NOKVM" > $D
# A heartbeat on the console (ttyS0): the runner takes silence for a hung host, and the
# process list shows where a scenario hangs.
( while true; do sleep HEARTBEAT_SECS; echo "--- heartbeat $(cut -d' ' -f1 /proc/uptime) s: $(cat /proc/loadavg)"; timeout -s KILL 10 ps -o pid,stat,args | grep -v -e ' \[' -e 'ps -o' -e heartbeat; done > /dev/ttyS0 2>&1 ) &
HEARTBEAT=$!
cleanup() {
  for p in /proc/[0-9]*; do
    p=${p#/proc/}
    [ "$p" -gt 1 ] && [ "$p" != "$HEARTBEAT" ] || continue
    ppid=$(cut -d' ' -f4 /proc/$p/stat 2>/dev/null)
    [ "$ppid" = "$HEARTBEAT" ] || kill -9 "$p" 2>/dev/null
  done
}
run() {
  echo "=== BEGIN $1" > $D
  mkdir -p /tmp/s$1
  cd /tmp/s$1
  t0=$(cut -d' ' -f1 /proc/uptime)
  timeout -s KILL $2 sh /scenarios/$1.sh </dev/null >/tmp/s$1.out 2>/tmp/s$1.err
  rc=$?
  t1=$(cut -d' ' -f1 /proc/uptime)
  cd /
  cleanup
  base64 /tmp/s$1.out | sed 's/^/O /' > $D
  base64 /tmp/s$1.err | sed 's/^/E /' > $D
  echo "=== END $1 rc=$rc t0=$t0 t1=$t1 limit=$2" > $D
  rm -rf /tmp/s$1 /tmp/s$1.out /tmp/s$1.err
}
"#;
    // No page migration behind KVM's back: transparent huge pages and compaction move
    // guest pages, and the emulated SVM does not survive it (docs/HOSTS.md).
    // HWKVM_KEEP_THP=1 keeps them on, for experiments.
    let thp_off = if std::env::var_os("HWKVM_KEEP_THP").is_some() {
        ""
    } else {
        "{\n  echo never > /sys/kernel/mm/transparent_hugepage/enabled\n  \
         echo never > /sys/kernel/mm/transparent_hugepage/defrag\n  \
         echo 0 > /proc/sys/vm/compaction_proactiveness\n  \
         echo 0 > /proc/sys/kernel/numa_balancing\n} 2>/dev/null"
    };
    let mut s = s.replace("HEARTBEAT_SECS", &HEARTBEAT_SECS.to_string()).replace("THP_OFF", thp_off);
    for (i, sc) in scenarios.iter().enumerate() {
        s += &format!("run {i} {}\n", sc.timeout.as_secs().max(1));
    }
    s += "echo \"=== DONE\" > $D\nsync\npoweroff -f\n";
    s
}

struct Parsed {
    host: String,
    module_failure: Option<String>,
    no_kvm: bool,
    done: bool,
    outcomes: Vec<Outcome>,
}

fn parse(log: &str, scenarios: &[Scenario]) -> Parsed {
    let mut p = Parsed {
        host: String::new(),
        module_failure: None,
        no_kvm: false,
        done: false,
        outcomes: scenarios
            .iter()
            .map(|s| Outcome {
                name: s.name.clone(),
                status: Status::NotRun,
                stdout: Vec::new(),
                stderr: Vec::new(),
                seconds: 0.0,
            })
            .collect(),
    };
    let (mut out, mut err) = (String::new(), String::new());
    let b64 = base64::engine::general_purpose::STANDARD;
    for line in log.lines() {
        let line = line.trim_end_matches('\r');
        if let Some(h) = line.strip_prefix("=== HOST ") {
            p.host = h.to_string();
        } else if let Some(m) = line.strip_prefix("=== MODFAIL ") {
            p.module_failure.get_or_insert(m.to_string());
        } else if line == "=== NOKVM" {
            p.no_kvm = true;
        } else if line == "=== DONE" {
            p.done = true;
        } else if line.starts_with("=== BEGIN ") {
            out.clear();
            err.clear();
        } else if let Some(l) = line.strip_prefix("O ") {
            out += l;
        } else if let Some(l) = line.strip_prefix("E ") {
            err += l;
        } else if let Some(rest) = line.strip_prefix("=== END ") {
            let mut f = rest.split_whitespace();
            let Some(i) = f.next().and_then(|i| i.parse::<usize>().ok()) else { continue };
            let field = |k: &str| rest.split_whitespace().find_map(|w| w.strip_prefix(k)).map(str::to_string);
            let rc: i32 = field("rc=").and_then(|v| v.parse().ok()).unwrap_or(-1);
            let t0: f64 = field("t0=").and_then(|v| v.parse().ok()).unwrap_or(0.0);
            let t1: f64 = field("t1=").and_then(|v| v.parse().ok()).unwrap_or(0.0);
            let limit: f64 = field("limit=").and_then(|v| v.parse().ok()).unwrap_or(f64::MAX);
            if let Some(o) = p.outcomes.get_mut(i) {
                o.seconds = t1 - t0;
                o.status = if rc == 137 && o.seconds + 0.5 >= limit { Status::TimedOut } else { Status::Exited(rc) };
                o.stdout = b64.decode(out.as_bytes()).unwrap_or_else(|e| format!("(undecodable: {e})").into_bytes());
                o.stderr = b64.decode(err.as_bytes()).unwrap_or_else(|e| format!("(undecodable: {e})").into_bytes());
            }
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_result_channel_parses_framed_output_and_ignores_the_rest() {
        let sc = |n: &str| Scenario { name: n.into(), script: String::new(), timeout: Duration::from_secs(10) };
        let log = "noise\r\n=== HOST 6.1, 2 CPUs\r\n=== BEGIN 0\r\nO aGVsbG8K\r\nE b29w\r\n=== END 0 rc=3 t0=1.00 t1=2.50 limit=10\r\n\
                   === BEGIN 1\n=== END 1 rc=137 t0=3 t1=13.2 limit=10\n";
        let p = parse(log, &[sc("a"), sc("b"), sc("c")]);
        assert_eq!(p.host, "6.1, 2 CPUs");
        assert_eq!(p.outcomes[0].status, Status::Exited(3));
        assert_eq!(p.outcomes[0].stdout, b"hello\n");
        assert_eq!(p.outcomes[0].stderr, b"oop");
        assert!((p.outcomes[0].seconds - 1.5).abs() < 1e-9);
        assert_eq!(p.outcomes[1].status, Status::TimedOut);
        assert_eq!(p.outcomes[2].status, Status::NotRun);
        assert!(!p.done);
    }

    #[test]
    fn quoting_survives_single_quotes() {
        assert_eq!(quote("a'b"), "'a'\\''b'");
    }
}
