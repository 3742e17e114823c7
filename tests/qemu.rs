//! The same kernel ELF boots under QEMU's PVH loader (TCG) and prints the same banner.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

fn qemu_binary() -> &'static str {
    let bin = "qemu-system-x86_64";
    let found =
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file())).unwrap_or(false);
    assert!(
        found,
        "{bin} is not installed: this test needs it (Debian: apt-get install qemu-system-x86; .ci/run installs it)"
    );
    bin
}

/// The banner lines that do not depend on the machine.
const BANNER: [&str; 5] = [
    "l4 kernel 0.1.0 (x86_64), booted via PVH, start info at 0x",
    "memory map:\n  [0x",
    "usable RAM: ",
    "modules: 1\n  0: [0x",
    "l4: boot complete\n",
];

#[test]
fn same_kernel_boots_under_qemu_with_the_same_banner() {
    let dir = TempDir::new("qemu");
    let module = dir.file("boot.mod", &[7u8; 3000]);
    let kernel = kernel_elf();
    let mut cmd = Command::new(qemu_binary());
    cmd.args(["-accel", "tcg", "-m", "128", "-nographic", "-no-reboot", "-display", "none", "-monitor", "none"])
        .args(["-serial", "stdio", "-device", "isa-debug-exit,iobase=0xf4,iosize=0x01"])
        .arg("-kernel")
        .arg(&kernel)
        .arg("-initrd")
        .arg(&module)
        .args(["-append", "hello from qemu"]);
    let q = run(cmd, Duration::from_secs(120));
    // isa-debug-exit: status = (value << 1) | 1, so the kernel's 0 is 1.
    q.assert_code(1).assert_stdout_has("cmdline: 'hello from qemu'").assert_stdout_has("] 3000 bytes ''");

    let module = module.to_str().unwrap();
    let l = l4vmm(&["--module", module, "--cmdline", "hello from qemu"]);
    l.assert_code(0);
    for line in BANNER {
        q.assert_stdout_has(line);
        l.assert_stdout_has(line);
    }
}
