//! The nested host's initramfs: busybox, the KVM modules, and what the caller adds.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::packages::Packages;
use crate::{on_path, Error, Result};

/// Where the KVM modules sit inside the image (loaded in this order by `/init`).
pub const MODULE_DIR: &str = "modules";

#[derive(Debug, Clone)]
enum Entry {
    Dir,
    File { src: PathBuf, mode: u32 },
    Bytes { data: Vec<u8>, mode: u32 },
    Symlink(String),
}

/// A cpio "newc" initramfs being put together. Paths are absolute paths inside the host.
#[derive(Debug, Clone)]
pub struct Image {
    entries: BTreeMap<String, Entry>,
    /// For stripped copies of programs.
    work: PathBuf,
    modules: Vec<String>,
}

/// The busybox applets the init script and the scenarios use.
const APPLETS: &[&str] = &[
    "sh", "ash", "mount", "umount", "insmod", "poweroff", "cat", "echo", "ls", "sleep", "mkdir", "rm", "cp", "mv",
    "cut", "grep", "sed", "tr", "head", "tail", "wc", "base64", "timeout", "kill", "stty", "uname", "test", "[",
    "printf", "env", "setsid", "ps", "uptime", "date", "true", "false", "seq", "dmesg", "ip", "nproc", "taskset",
    "sort", "uniq", "xargs", "find", "ln", "chmod", "id", "wait", "expr", "awk", "tee", "od", "hexdump",
];

impl Image {
    /// busybox with its applet links, the KVM modules, and the directories a Linux system
    /// needs to boot to a shell; `work` holds stripped program copies.
    pub fn new(packages: &Packages, work: &Path) -> Result<Image> {
        std::fs::create_dir_all(work).map_err(Error::io(format!("creating {}", work.display())))?;
        let mut img = Image { entries: BTreeMap::new(), work: work.to_path_buf(), modules: Vec::new() };
        for d in ["/proc", "/sys", "/dev", "/tmp", "/root", "/etc", "/usr/bin", "/usr/sbin", "/sbin"] {
            img.dir(d);
        }
        img.file("/bin/busybox", &packages.busybox(), 0o755);
        for a in APPLETS {
            img.symlink(&format!("/bin/{a}"), "busybox");
        }
        for m in packages.kvm_modules() {
            let name = m.file_name().and_then(|n| n.to_str()).unwrap_or("module.ko").to_string();
            let dest = format!("/{MODULE_DIR}/{name}");
            img.file(&dest, &m, 0o644);
            img.modules.push(dest);
        }
        Ok(img)
    }

    /// The KVM modules' paths inside the image, in load order.
    pub fn modules(&self) -> &[String] {
        &self.modules
    }

    fn parents(&mut self, path: &str) {
        let mut p = Path::new(path).parent();
        while let Some(d) = p {
            let s = d.to_string_lossy().to_string();
            if s == "/" || s.is_empty() {
                break;
            }
            self.entries.entry(s).or_insert(Entry::Dir);
            p = d.parent();
        }
    }

    /// An empty directory.
    pub fn dir(&mut self, path: &str) -> &mut Self {
        self.parents(path);
        self.entries.insert(path.to_string(), Entry::Dir);
        self
    }

    /// A copy of the host file `src` at `path`.
    pub fn file(&mut self, path: &str, src: &Path, mode: u32) -> &mut Self {
        self.parents(path);
        self.entries.insert(path.to_string(), Entry::File { src: src.to_path_buf(), mode });
        self
    }

    /// A file with the contents `data`.
    pub fn bytes(&mut self, path: &str, data: impl Into<Vec<u8>>, mode: u32) -> &mut Self {
        self.parents(path);
        self.entries.insert(path.to_string(), Entry::Bytes { data: data.into(), mode });
        self
    }

    /// A symbolic link at `path` to `target`.
    pub fn symlink(&mut self, path: &str, target: &str) -> &mut Self {
        self.parents(path);
        self.entries.insert(path.to_string(), Entry::Symlink(target.to_string()));
        self
    }

    /// The host directory tree `src` (regular files and directories) at `path`.
    pub fn tree(&mut self, path: &str, src: &Path) -> Result<&mut Self> {
        self.dir(path);
        let rd = std::fs::read_dir(src).map_err(Error::io(format!("reading {}", src.display())))?;
        for e in rd {
            let e = e.map_err(Error::io(format!("reading {}", src.display())))?;
            let p = e.path();
            let dest = format!("{path}/{}", e.file_name().to_string_lossy());
            if p.is_dir() {
                self.tree(&dest, &p)?;
            } else if p.is_file() {
                let mode = std::fs::metadata(&p).map(|m| m.permissions().mode() & 0o7777).unwrap_or(0o644);
                self.file(&dest, &p, mode);
            }
        }
        Ok(self)
    }

    /// The host program `src` at `path`, without debug information when `strip` (and
    /// `objcopy` is there), with every shared library `ldd` names at its host path.
    pub fn program(&mut self, path: &str, src: &Path, strip: bool) -> Result<&mut Self> {
        if !src.is_file() {
            return Err(Error::Package(format!("{} does not exist (build it first)", src.display())));
        }
        let mut copy = src.to_path_buf();
        if strip && on_path("objcopy") {
            let name = path.trim_start_matches('/').replace('/', "_");
            let out = self.work.join(format!("{name}.stripped"));
            let ok =
                Command::new("objcopy").arg("--strip-debug").arg(src).arg(&out).status().is_ok_and(|s| s.success());
            if ok {
                copy = out;
            }
        }
        self.file(path, &copy, 0o755);
        for lib in shared_libraries(src)? {
            let dest = lib.to_string_lossy().to_string();
            if !self.entries.contains_key(&dest) {
                self.file(&dest, &lib, 0o755);
            }
        }
        Ok(self)
    }

    /// Writes the archive to `out`.
    pub fn write(&self, out: &Path) -> Result<()> {
        let what = || format!("writing {}", out.display());
        let f = std::fs::File::create(out).map_err(Error::io(what()))?;
        let mut w = std::io::BufWriter::new(f);
        for (ino, (path, entry)) in self.entries.iter().enumerate() {
            let name = path.trim_start_matches('/');
            let b = cpio::NewcBuilder::new(name).ino(ino as u32 + 1).nlink(1);
            let (b, data): (_, Vec<u8>) = match entry {
                Entry::Dir => (b.mode(0o040_755).nlink(2), Vec::new()),
                Entry::File { src, mode } => {
                    let d = std::fs::read(src).map_err(Error::io(format!("reading {}", src.display())))?;
                    (b.mode(0o100_000 | mode), d)
                }
                Entry::Bytes { data, mode } => (b.mode(0o100_000 | mode), data.clone()),
                Entry::Symlink(t) => (b.mode(0o120_777), t.as_bytes().to_vec()),
            };
            let len = u32::try_from(data.len())
                .map_err(|_| Error::Package(format!("{path} is too large for a cpio archive")))?;
            let mut fw = b.write(&mut w, len);
            fw.write_all(&data).map_err(Error::io(what()))?;
            fw.finish().map_err(Error::io(what()))?;
        }
        cpio::newc::trailer(&mut w).map_err(Error::io(what()))?;
        w.flush().map_err(Error::io(what()))
    }
}

/// The shared libraries (and the dynamic loader) `ldd` says `program` loads.
fn shared_libraries(program: &Path) -> Result<Vec<PathBuf>> {
    let out = Command::new("ldd").arg(program).output().map_err(Error::io("running ldd"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut libs = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.contains("not a dynamic executable") || line.contains("statically linked") {
            return Ok(Vec::new());
        }
        if let Some((name, rest)) = line.split_once("=>") {
            let rest = rest.trim();
            if rest.starts_with("not found") {
                return Err(Error::Library { program: program.to_path_buf(), library: name.trim().to_string() });
            }
            if let Some(p) = rest.split_whitespace().next().filter(|p| p.starts_with('/')) {
                libs.push(PathBuf::from(p));
            }
        } else if let Some(p) = line.split_whitespace().next().filter(|p| p.starts_with('/')) {
            libs.push(PathBuf::from(p));
        }
    }
    Ok(libs)
}
