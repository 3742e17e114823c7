//! The Debian packages the nested host is made of, fetched once into a cache.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{on_path, Error, Result};

/// The metapackage whose dependency names the current cloud kernel.
pub const KERNEL_META: &str = "linux-image-cloud-amd64";
/// Static busybox: the nested host's shell and tools.
pub const BUSYBOX: &str = "busybox-static";
/// gdb without Python (the full gdb needs its Python library tree).
pub const GDB: &str = "gdb-minimal";

/// The unpacked packages.
#[derive(Debug, Clone)]
pub struct Packages {
    /// Where the packages are unpacked (`dpkg-deb -x`).
    pub root: PathBuf,
    /// The kernel package, e.g. `linux-image-6.1.0-57-cloud-amd64`.
    pub kernel_package: String,
    /// Its release, e.g. `6.1.0-57-cloud-amd64`.
    pub release: String,
}

impl Packages {
    pub fn vmlinuz(&self) -> PathBuf {
        self.root.join("boot").join(format!("vmlinuz-{}", self.release))
    }

    /// The modules that give the host `/dev/kvm` on AMD SVM, in load order.
    pub fn kvm_modules(&self) -> Vec<PathBuf> {
        let m = self.root.join("lib/modules").join(&self.release).join("kernel");
        vec![m.join("virt/lib/irqbypass.ko"), m.join("arch/x86/kvm/kvm.ko"), m.join("arch/x86/kvm/kvm-amd.ko")]
    }

    pub fn busybox(&self) -> PathBuf {
        self.root.join("bin/busybox")
    }

    pub fn gdb(&self) -> PathBuf {
        self.root.join("usr/bin/gdb")
    }
}

/// Fetches (if not cached) and unpacks the packages under `cache`.
pub fn prepare(cache: &Path) -> Result<Packages> {
    if !on_path("qemu-system-x86_64") {
        return Err(Error::MissingTool {
            tool: "qemu-system-x86_64",
            hint: "the nested kvm_amd host runs under QEMU's TCG (Debian: apt-get install qemu-system-x86)",
        });
    }
    for (tool, hint) in [
        ("apt-get", "the nested host's kernel and tools are Debian packages fetched with apt-get download"),
        ("apt-cache", "apt-cache names the current cloud kernel package"),
        ("dpkg-deb", "dpkg-deb unpacks the fetched packages"),
        ("ldd", "ldd lists the shared libraries the programs copied into the host need"),
    ] {
        if !on_path(tool) {
            return Err(Error::MissingTool { tool, hint });
        }
    }
    let debs = cache.join("debs");
    std::fs::create_dir_all(&debs).map_err(Error::io(format!("creating {}", debs.display())))?;
    let kernel_package = kernel_package()?;
    let names = [kernel_package.as_str(), BUSYBOX, GDB];
    let mut files = Vec::new();
    for name in names {
        files.push(download(&debs, name)?);
    }
    let release = kernel_package.strip_prefix("linux-image-").unwrap_or(&kernel_package).to_string();
    let root = cache.join(format!("root-{release}"));
    let stamp = root.join(".unpacked");
    let want: String = files.iter().map(|f| format!("{}\n", f.display())).collect();
    if std::fs::read_to_string(&stamp).ok().as_deref() != Some(want.as_str()) {
        // Unpack beside the final place and rename, so a half-unpacked tree is never used.
        let tmp = cache.join(format!(".unpack-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        for f in &files {
            let out =
                Command::new("dpkg-deb").arg("-x").arg(f).arg(&tmp).output().map_err(Error::io("running dpkg-deb"))?;
            if !out.status.success() {
                return Err(Error::Package(format!(
                    "dpkg-deb -x {} failed: {}",
                    f.display(),
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
        }
        std::fs::write(tmp.join(".unpacked"), &want).map_err(Error::io("writing the unpack stamp"))?;
        let _ = std::fs::remove_dir_all(&root);
        std::fs::rename(&tmp, &root)
            .map_err(Error::io(format!("moving the unpacked packages to {}", root.display())))?;
    }
    let p = Packages { root, kernel_package, release };
    for f in [p.vmlinuz(), p.busybox(), p.gdb()].into_iter().chain(p.kvm_modules()) {
        if !f.is_file() {
            return Err(Error::Package(format!("the unpacked packages lack {}", f.display())));
        }
    }
    Ok(p)
}

/// The kernel package `linux-image-cloud-amd64` depends on today (the version moves).
fn kernel_package() -> Result<String> {
    let ask = || Command::new("apt-cache").args(["depends", KERNEL_META]).output();
    let mut out = ask().map_err(Error::io("running apt-cache"))?;
    if !out.status.success() && refresh_lists()? {
        out = ask().map_err(Error::io("running apt-cache"))?;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .map(str::trim)
        .find(|d| d.starts_with("linux-image-") && d.ends_with("-cloud-amd64"))
        .map(str::to_string)
        .ok_or_else(|| Error::Apt {
            what: format!("name the kernel {KERNEL_META} depends on"),
            detail: format!(
                "`apt-cache depends {KERNEL_META}` said: {}{} (is this a Debian/Ubuntu host with the package lists \
                 fetched? `apt-get update` fetches them)",
                text.trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        })
}

/// `apt-get update`, once, where we may (as root). Whether it ran.
fn refresh_lists() -> Result<bool> {
    static DONE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    let root = effective_uid() == 0;
    if !root || DONE.swap(true, std::sync::atomic::Ordering::SeqCst) {
        return Ok(false);
    }
    let st = Command::new("apt-get").args(["update", "-qq"]).status().map_err(Error::io("running apt-get update"))?;
    Ok(st.success())
}

fn effective_uid() -> u32 {
    // /proc/self/status has the effective uid as the second field of "Uid:".
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).and_then(|l| l.split_whitespace().nth(2)?.parse().ok()))
        .unwrap_or(u32::MAX)
}

/// The cached `.deb` of `name`, downloaded with `apt-get download` if there is none.
fn download(debs: &Path, name: &str) -> Result<PathBuf> {
    let find = || -> Option<PathBuf> {
        let prefix = format!("{name}_");
        let mut found: Vec<PathBuf> = std::fs::read_dir(debs)
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".deb"))
            })
            .collect();
        found.sort();
        found.pop()
    };
    if let Some(f) = find() {
        return Ok(f);
    }
    // Into a private directory first: a download cut short never looks like a package.
    let tmp = debs.join(format!(".dl-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).map_err(Error::io(format!("creating {}", tmp.display())))?;
    let get = || Command::new("apt-get").args(["download", "-qq", name]).current_dir(&tmp).output();
    let mut out = get().map_err(Error::io("running apt-get download"))?;
    if !out.status.success() && refresh_lists()? {
        out = get().map_err(Error::io("running apt-get download"))?;
    }
    if !out.status.success() {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(Error::Apt {
            what: format!("download {name}"),
            detail: format!(
                "{} (the nested kvm_amd host needs Debian's {name}; check the network and the package lists)",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    for e in std::fs::read_dir(&tmp).map_err(Error::io("reading the download directory"))? {
        let p = e.map_err(Error::io("reading the download directory"))?.path();
        if let Some(n) = p.file_name() {
            std::fs::rename(&p, debs.join(n)).map_err(Error::io("moving the downloaded package"))?;
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
    find().ok_or_else(|| Error::Apt { what: format!("download {name}"), detail: "apt-get left no .deb".into() })
}
