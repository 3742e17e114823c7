//! Helpers for the end-to-end tests: run the real l4vmm binary (or QEMU) as a child
//! process, with a hard deadline, and look at what it printed and how it exited.
#![allow(dead_code)]

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The l4vmm binary under test.
pub fn l4vmm_path() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_l4vmm"))
}

/// The kernel ELF that build.rs built and embedded.
pub fn kernel_elf() -> PathBuf {
    PathBuf::from(env!("L4_KERNEL_ELF"))
}

/// The default boot archive (cpio) that build.rs packed and embedded.
pub fn boot_archive() -> PathBuf {
    PathBuf::from(env!("L4_BOOT_ARCHIVE"))
}

/// Fails the test, naming the reason, unless this host can run KVM guests.
pub fn require_kvm() {
    if let Err(e) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm") {
        panic!(
            "these tests boot real VMs and need read/write access to /dev/kvm, which failed: {e}. \
             Run them on a Linux host with KVM (kvm_intel, kvm_amd or kvm_pvm)."
        );
    }
}

/// The KVM this machine has (the tests run on PVM and, through tests/hwkvm.rs, on a
/// nested kvm_amd host; some behaviour differs by design, e.g. which user entry works).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Host {
    /// kvm_pvm: guest ring 0 emulated, `syscall` does not enter ring 0.
    Pvm,
    /// kvm_amd (SVM).
    Amd,
    /// kvm_intel (VMX).
    Intel,
    Unknown,
}

pub fn host() -> Host {
    let loaded = |m: &str| std::path::Path::new("/sys/module").join(m).exists();
    if loaded("kvm_pvm") {
        Host::Pvm
    } else if loaded("kvm_amd") {
        Host::Amd
    } else if loaded("kvm_intel") {
        Host::Intel
    } else {
        Host::Unknown
    }
}

/// What a finished child printed and how it exited.
#[derive(Debug)]
pub struct Run {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The exit code (panics if the child was killed by a signal).
    pub fn code(&self) -> i32 {
        self.status.code().unwrap_or_else(|| panic!("killed by a signal: {self:?}"))
    }

    /// Asserts the exit code, showing the output if it differs.
    pub fn assert_code(&self, want: i32) -> &Self {
        assert_eq!(
            self.code(),
            want,
            "unexpected exit status\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    pub fn assert_stdout_has(&self, needle: &str) -> &Self {
        assert!(
            self.stdout.contains(needle),
            "stdout lacks {needle:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    pub fn assert_stderr_has(&self, needle: &str) -> &Self {
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout,
            self.stderr
        );
        self
    }
}

/// The default demo (every server, ipcbench's quick run included) with a hang guard
/// wide enough for the nested kvm_amd host, where ring 0 runs at TCG speed (60 s was
/// once not enough there, in CI). `extra` goes before it.
pub fn demo(extra: &[&str]) -> Run {
    let mut args = extra.to_vec();
    args.extend(["--timeout", "240"]);
    l4vmm_within(&args, Duration::from_secs(300))
}

/// Runs l4vmm with `args` (and a --timeout safety net unless the args set one).
pub fn l4vmm(args: &[&str]) -> Run {
    l4vmm_within(args, Duration::from_secs(90))
}

/// Like [`l4vmm`], for runs that take long (the host deadline is `deadline`; pass a
/// --timeout below it).
pub fn l4vmm_within(args: &[&str], deadline: Duration) -> Run {
    require_kvm();
    let mut cmd = Command::new(l4vmm_path());
    cmd.args(args);
    if !args.contains(&"--timeout") {
        cmd.args(["--timeout", "60"]);
    }
    run(cmd, deadline)
}

/// Spawns `cmd` with piped output and stdin from /dev/null.
pub fn spawn(mut cmd: Command) -> Child {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.env("RUST_LOG", "info");
    cmd.spawn().unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"))
}

/// Reads `child`'s stdout until `needle` has appeared (the child keeps running and its
/// stdout stays piped for `finish`); what was read. Panics if the child's stdout ends
/// first. A test that must act once the guest is somewhere waits for the guest to say so,
/// never for a guessed time.
#[allow(dead_code)]
pub fn read_stdout_until(child: &mut Child, needle: &str) -> String {
    let mut out = child.stdout.take().expect("piped stdout");
    let mut seen = Vec::new();
    let mut byte = [0u8; 1];
    while !String::from_utf8_lossy(&seen).contains(needle) {
        match out.read(&mut byte) {
            Ok(1) => seen.push(byte[0]),
            _ => panic!("stdout ended before {needle:?}:\n{}", String::from_utf8_lossy(&seen)),
        }
    }
    child.stdout = Some(out);
    String::from_utf8_lossy(&seen).into_owned()
}

/// Waits for `child` (killing it after `deadline`) and collects its output.
pub fn finish(mut child: Child, deadline: Duration) -> Run {
    let mut out = child.stdout.take().expect("piped stdout");
    let mut err = child.stderr.take().expect("piped stderr");
    // Lossy: a guest may print any bytes (the hostile-guest test does).
    let out_t = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = out.read_to_end(&mut b);
        String::from_utf8_lossy(&b).into_owned()
    });
    // Lossy: a guest may print any bytes (the hostile-guest test does).
    let err_t = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = err.read_to_end(&mut b);
        String::from_utf8_lossy(&b).into_owned()
    });
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            break s;
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("child did not finish within {deadline:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Run { status, stdout: out_t.join().unwrap_or_default(), stderr: err_t.join().unwrap_or_default() }
}

/// Runs `cmd` to completion.
pub fn run(cmd: Command, deadline: Duration) -> Run {
    finish(spawn(cmd), deadline)
}

/// A fresh temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("l4test-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    pub fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, bytes).expect("write temp file");
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// QEMU (TCG) booting the built kernel with the default boot archive as its one module,
/// `smp` CPUs and kernel command line `append`; the exit device at port 0xf4 gives
/// status `(value << 1) | 1`.
pub fn qemu(smp: u32, append: &str) -> Command {
    let bin = "qemu-system-x86_64";
    let found =
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file())).unwrap_or(false);
    assert!(
        found,
        "{bin} is not installed: this test needs it (Debian: apt-get install qemu-system-x86; .ci/run installs it)"
    );
    let mut cmd = Command::new(bin);
    cmd.args(["-accel", "tcg", "-smp", &smp.to_string(), "-m", "256", "-nographic", "-no-reboot", "-display", "none"])
        .args(["-monitor", "none", "-serial", "stdio", "-device", "isa-debug-exit,iobase=0xf4,iosize=0x01"])
        .arg("-kernel")
        .arg(kernel_elf())
        .arg("-initrd")
        .arg(boot_archive())
        .args(["-append", append]);
    cmd
}
