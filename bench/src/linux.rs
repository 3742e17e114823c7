//! Linux baselines on the host, measured in the same run: round trips between two
//! processes over a pipe, a unix socket, eventfds and a futex, both pinned to one CPU (a
//! same-CPU switch, like the guest's one-vCPU synchronous IPC, and reproducible: unpinned,
//! cross-CPU wake-ups on a virtualized host vary tenfold between runs), and a spinning
//! shared-memory flag with the two processes on two different CPUs.

use std::time::Instant;

use crate::Scenario;

/// Reads or writes exactly one u64 (eventfd) or one byte.
fn xfer(fd: i32, write: bool, len: usize) {
    let mut buf = [1u8; 8];
    loop {
        // SAFETY: buf is valid for `len` <= 8 bytes.
        let n = unsafe {
            if write {
                libc::write(fd, buf.as_ptr().cast(), len)
            } else {
                libc::read(fd, buf.as_mut_ptr().cast(), len)
            }
        };
        if n == len as isize {
            return;
        }
        if n == 0 || (n < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR)) {
            // SAFETY: the child leaves when its partner is gone.
            unsafe { libc::_exit(0) };
        }
    }
}

/// This process's allowed CPUs.
fn affinity() -> libc::cpu_set_t {
    // SAFETY: a zeroed cpu_set_t is valid; sched_getaffinity fills it for this process.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set);
        set
    }
}

fn set_affinity(set: &libc::cpu_set_t) {
    // SAFETY: `set` is a valid cpu_set_t of the size passed.
    unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), set) };
}

fn pin(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t with one bit set.
    let set = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        set
    };
    set_affinity(&set);
}

/// Forks a child running `child` for ever, times `samples` × `per` runs of `ping` in the
/// parent (ns per round trip per sample), then kills the child.
fn measure(samples: usize, per: usize, child: impl FnOnce(), mut ping: impl FnMut()) -> Vec<f64> {
    // SAFETY: the child only runs `child` (plain system calls) and exits.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        child();
        // SAFETY: leave without running the parent's destructors.
        unsafe { libc::_exit(0) };
    }
    for _ in 0..per * 10 {
        ping();
    }
    let mut out = Vec::with_capacity(samples);
    for _ in 0..samples {
        let t = Instant::now();
        for _ in 0..per {
            ping();
        }
        out.push(t.elapsed().as_nanos() as f64 / per as f64);
    }
    // SAFETY: our own child.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        libc::waitpid(pid, std::ptr::null_mut(), 0);
    }
    out
}

pub fn scenario(path: &str, mut ns: Vec<f64>) -> Scenario {
    ns.sort_by(|a, b| a.total_cmp(b));
    let median = ns[ns.len() / 2];
    Scenario {
        name: path.to_string(),
        path: path.to_string(),
        placement: "host".into(),
        size_bytes: 1,
        batch: 1,
        median_ns: median,
        p99_ns: ns[(ns.len() * 99 / 100).min(ns.len() - 1)],
        min_ns: ns[0],
        ops_per_sec: 1e9 / median,
        ring0_instructions_per_op: None,
        ratio_to_floor: None,
        floor: None,
        floor_ring0_instructions: None,
        ring0_ratio_to_floor: None,
        samples: Some(ns.len() as u64),
    }
}

/// A round trip over file descriptors: the child reads `child[0]` and answers on
/// `child[1]`; the parent writes `parent[0]` and waits on `parent[1]`; `len` bytes each way.
fn fd_ping_pong(path: &str, samples: usize, per: usize, child: [i32; 2], parent: [i32; 2], len: usize) -> Scenario {
    let serve = || loop {
        xfer(child[0], false, len);
        xfer(child[1], true, len);
    };
    let ping = || {
        xfer(parent[0], true, len);
        xfer(parent[1], false, len);
    };
    scenario(path, measure(samples, per, serve, ping))
}

fn fds2() -> [i32; 2] {
    let mut f = [0i32; 2];
    // SAFETY: f has room for two descriptors.
    assert_eq!(unsafe { libc::pipe(f.as_mut_ptr()) }, 0, "pipe");
    f
}

pub fn run(quick: bool) -> Vec<Scenario> {
    let (samples, per) = if quick { (200, 10) } else { (2000, 10) };
    let mut out = Vec::new();

    let original = affinity();
    // SAFETY: CPU_ISSET only reads the set.
    let cpus: Vec<usize> =
        (0..libc::CPU_SETSIZE as usize).filter(|&c| unsafe { libc::CPU_ISSET(c, &original) }).collect();
    // Children inherit the pinning.
    pin(cpus.first().copied().unwrap_or(0));

    let (a, b) = (fds2(), fds2());
    out.push(fd_ping_pong("linux-pipe", samples, per, [a[0], b[1]], [a[1], b[0]], 1));

    let mut sv = [0i32; 2];
    // SAFETY: sv has room for two descriptors.
    assert_eq!(unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, sv.as_mut_ptr()) }, 0);
    out.push(fd_ping_pong("linux-unix", samples, per, [sv[1], sv[1]], [sv[0], sv[0]], 1));

    // SAFETY: plain eventfd creation.
    let (e1, e2) = unsafe { (libc::eventfd(0, 0), libc::eventfd(0, 0)) };
    assert!(e1 >= 0 && e2 >= 0, "eventfd failed");
    out.push(fd_ping_pong("linux-eventfd", samples, per, [e1, e2], [e1, e2], 8));

    // A shared word: 1 = ping, 2 = pong.
    // SAFETY: an anonymous shared mapping of one page, inherited by the child.
    let word = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(word, libc::MAP_FAILED, "mmap of the shared futex word failed");
    let word = word as *mut u32;
    // SAFETY: `word` is a live, page-aligned shared mapping for the rest of the process.
    let atom = || unsafe { &*(word as *const std::sync::atomic::AtomicU32) };
    let futex = |op: i32, val: u32| {
        // SAFETY: a futex call on the shared word.
        unsafe { libc::syscall(libc::SYS_futex, word, op, val, std::ptr::null::<libc::timespec>()) };
    };
    use std::sync::atomic::Ordering::SeqCst;
    out.push(scenario(
        "linux-futex",
        measure(
            samples,
            per,
            || loop {
                while atom().load(SeqCst) != 1 {
                    futex(libc::FUTEX_WAIT, 0);
                }
                atom().store(2, SeqCst);
                futex(libc::FUTEX_WAKE, 1);
            },
            || {
                atom().store(1, SeqCst);
                futex(libc::FUTEX_WAKE, 1);
                while atom().load(SeqCst) != 2 {
                    futex(libc::FUTEX_WAIT, 1);
                }
                atom().store(0, SeqCst);
            },
        ),
    ));

    atom().store(0, SeqCst);
    if let Some(&other) = cpus.get(1) {
        out.push(scenario(
            "linux-spin",
            measure(
                samples,
                per * 10,
                || {
                    pin(other);
                    loop {
                        while atom().load(SeqCst) != 1 {
                            std::hint::spin_loop();
                        }
                        atom().store(2, SeqCst);
                    }
                },
                || {
                    atom().store(1, SeqCst);
                    while atom().load(SeqCst) != 2 {
                        std::hint::spin_loop();
                    }
                },
            ),
        ));
    }
    set_affinity(&original);
    out
}
