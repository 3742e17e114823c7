//! The Xen PVH start info (`hvm_start_info`, version 1), as l4vmm and QEMU write it.
//!
//! Layout from xen/include/public/arch-x86/hvm/start_info.h. The kernel reads it through a
//! [`PhysMem`] so the parser never dereferences an address it has not bounds-checked, and
//! decodes fields with `from_le_bytes` so it needs no `unsafe` casts.
//!
//! Invariants: [`BootInfo::parse`] fails rather than returning a partial view; every
//! slice it returns was handed out by the [`PhysMem`]; counts are capped by
//! [`MAX_MEMMAP`] and [`MAX_MODULES`] so a hostile loader cannot make the kernel loop long.

/// `hvm_start_info.magic`.
pub const MAGIC: u32 = 0x336e_c578;
/// Size of `hvm_start_info` (version 1).
pub const START_INFO_SIZE: usize = 56;
/// Size of one `hvm_modlist_entry`.
pub const MODLIST_ENTRY_SIZE: usize = 32;
/// Size of one `hvm_memmap_table_entry`.
pub const MEMMAP_ENTRY_SIZE: usize = 24;
/// The most memory-map entries the kernel looks at.
pub const MAX_MEMMAP: usize = 128;
/// The most boot modules the kernel looks at.
pub const MAX_MODULES: usize = 64;
/// The longest command line (without its NUL) the kernel reads.
pub const MAX_CMDLINE: usize = 4096;

/// Read-only access to guest-physical memory.
pub trait PhysMem<'a> {
    /// `len` bytes at `paddr`, or `None` if any of them is not accessible.
    fn bytes(&self, paddr: u64, len: usize) -> Option<&'a [u8]>;
}

/// Why the start info could not be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The start info itself is not readable.
    StartInfoUnreadable,
    /// `magic` is wrong: not a PVH boot.
    BadMagic(u32),
    /// The memory map is missing, too long or unreadable.
    MemmapUnreadable,
    /// The module list is too long or unreadable.
    ModlistUnreadable,
}

/// An E820-style memory type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemType {
    Ram,
    Reserved,
    AcpiReclaimable,
    AcpiNvs,
    Unusable,
    Other(u32),
}

impl MemType {
    fn from_raw(t: u32) -> Self {
        match t {
            1 => MemType::Ram,
            2 => MemType::Reserved,
            3 => MemType::AcpiReclaimable,
            4 => MemType::AcpiNvs,
            5 => MemType::Unusable,
            n => MemType::Other(n),
        }
    }

    /// A short lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            MemType::Ram => "ram",
            MemType::Reserved => "reserved",
            MemType::AcpiReclaimable => "acpi",
            MemType::AcpiNvs => "acpi-nvs",
            MemType::Unusable => "unusable",
            MemType::Other(_) => "other",
        }
    }
}

/// One memory-map entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemRegion {
    pub base: u64,
    pub size: u64,
    pub kind: MemType,
}

impl MemRegion {
    /// One past the last byte (saturating).
    pub fn end(&self) -> u64 {
        self.base.saturating_add(self.size)
    }
}

/// One boot module.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Module<'a> {
    pub paddr: u64,
    pub size: u64,
    /// The module's own command line (l4vmm puts the file name there; may be empty).
    pub cmdline: &'a [u8],
}

/// The validated start info.
#[derive(Clone, Copy, Debug)]
pub struct BootInfo<'a> {
    memmap: &'a [u8],
    modlist: &'a [u8],
    cmdline: &'a [u8],
    /// `hvm_start_info.rsdp_paddr` (0 if none).
    pub rsdp_paddr: u64,
}

fn le32(b: &[u8], off: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[off..off + 4]);
    u32::from_le_bytes(a)
}

fn le64(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(a)
}

/// Reads a NUL-terminated string of at most [`MAX_CMDLINE`] bytes at `paddr` (0 = none).
/// Unreadable memory or a missing NUL yields the readable prefix.
fn c_string<'a, M: PhysMem<'a>>(mem: &M, paddr: u64) -> &'a [u8] {
    if paddr == 0 {
        return &[];
    }
    // Read page by page so a string that ends just before unreadable memory still works.
    let mut len = 0usize;
    let mut last: &'a [u8] = &[];
    while len < MAX_CMDLINE {
        let chunk = 4096 - ((paddr + len as u64) % 4096) as usize;
        let want = (len + chunk).min(MAX_CMDLINE);
        let Some(bytes) = mem.bytes(paddr, want) else {
            break;
        };
        last = bytes;
        if let Some(nul) = bytes[len..].iter().position(|&b| b == 0) {
            return &bytes[..len + nul];
        }
        len = want;
    }
    last
}

impl<'a> BootInfo<'a> {
    /// Validates the start info at `paddr`.
    pub fn parse<M: PhysMem<'a>>(mem: &M, paddr: u64) -> Result<Self, Error> {
        let si = mem.bytes(paddr, START_INFO_SIZE).ok_or(Error::StartInfoUnreadable)?;
        let magic = le32(si, 0);
        if magic != MAGIC {
            return Err(Error::BadMagic(magic));
        }
        let nr_modules = le32(si, 12) as usize;
        let modlist_paddr = le64(si, 16);
        let cmdline_paddr = le64(si, 24);
        let rsdp_paddr = le64(si, 32);
        let memmap_paddr = le64(si, 40);
        let memmap_entries = le32(si, 48) as usize;

        if memmap_entries == 0 || memmap_entries > MAX_MEMMAP {
            return Err(Error::MemmapUnreadable);
        }
        let memmap = mem.bytes(memmap_paddr, memmap_entries * MEMMAP_ENTRY_SIZE).ok_or(Error::MemmapUnreadable)?;
        let modlist = if nr_modules == 0 {
            &[][..]
        } else if nr_modules > MAX_MODULES {
            return Err(Error::ModlistUnreadable);
        } else {
            mem.bytes(modlist_paddr, nr_modules * MODLIST_ENTRY_SIZE).ok_or(Error::ModlistUnreadable)?
        };
        let cmdline = c_string(mem, cmdline_paddr);
        Ok(BootInfo { memmap, modlist, cmdline, rsdp_paddr })
    }

    /// The memory map, in the loader's order.
    pub fn memmap(&self) -> impl Iterator<Item = MemRegion> + 'a {
        self.memmap.chunks_exact(MEMMAP_ENTRY_SIZE).map(|e| MemRegion {
            base: le64(e, 0),
            size: le64(e, 8),
            kind: MemType::from_raw(le32(e, 16)),
        })
    }

    /// Number of boot modules.
    pub fn module_count(&self) -> usize {
        self.modlist.len() / MODLIST_ENTRY_SIZE
    }

    /// The boot modules, in order. Each module's own command line is read through `mem`.
    pub fn modules<M: PhysMem<'a>>(&self, mem: &'a M) -> impl Iterator<Item = Module<'a>> + 'a {
        self.modlist.chunks_exact(MODLIST_ENTRY_SIZE).map(move |e| Module {
            paddr: le64(e, 0),
            size: le64(e, 8),
            cmdline: c_string(mem, le64(e, 16)),
        })
    }

    /// The kernel command line (without its NUL; empty if none).
    pub fn cmdline(&self) -> &'a [u8] {
        self.cmdline
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Mem(Vec<u8>);
    impl<'a> PhysMem<'a> for &'a Mem {
        fn bytes(&self, paddr: u64, len: usize) -> Option<&'a [u8]> {
            let start = usize::try_from(paddr).ok()?;
            self.0.get(start..start.checked_add(len)?)
        }
    }

    fn put(m: &mut [u8], off: usize, v: &[u8]) {
        m[off..off + v.len()].copy_from_slice(v);
    }

    fn image() -> Mem {
        let mut m = vec![0u8; 0x3000];
        put(&mut m, 0, &MAGIC.to_le_bytes());
        put(&mut m, 4, &1u32.to_le_bytes());
        put(&mut m, 12, &1u32.to_le_bytes()); // nr_modules
        put(&mut m, 16, &0x100u64.to_le_bytes()); // modlist
        put(&mut m, 24, &0x200u64.to_le_bytes()); // cmdline
        put(&mut m, 40, &0x300u64.to_le_bytes()); // memmap
        put(&mut m, 48, &2u32.to_le_bytes());
        put(&mut m, 0x100, &0x2000u64.to_le_bytes());
        put(&mut m, 0x108, &0x800u64.to_le_bytes());
        put(&mut m, 0x110, &0x280u64.to_le_bytes());
        put(&mut m, 0x200, b"ktest=none\0");
        put(&mut m, 0x280, b"root.elf\0");
        put(&mut m, 0x300, &0u64.to_le_bytes());
        put(&mut m, 0x308, &0x9fc00u64.to_le_bytes());
        put(&mut m, 0x310, &1u32.to_le_bytes());
        put(&mut m, 0x318, &0x100000u64.to_le_bytes());
        put(&mut m, 0x320, &0x1000u64.to_le_bytes());
        put(&mut m, 0x328, &7u32.to_le_bytes());
        Mem(m)
    }

    #[test]
    fn parses_what_l4vmm_writes() {
        let m = image();
        let mem = &m;
        let info = BootInfo::parse(&mem, 0).unwrap();
        let regions: Vec<_> = info.memmap().collect();
        assert_eq!(regions.len(), 2);
        assert_eq!(regions[0].kind, MemType::Ram);
        assert_eq!(regions[0].end(), 0x9fc00);
        assert_eq!(regions[1].kind, MemType::Other(7));
        assert_eq!(info.cmdline(), b"ktest=none");
        let mods: Vec<_> = info.modules(&mem).collect();
        assert_eq!(mods.len(), 1);
        assert_eq!(mods[0].paddr, 0x2000);
        assert_eq!(mods[0].size, 0x800);
        assert_eq!(mods[0].cmdline, b"root.elf");
    }

    #[test]
    fn rejects_bad_magic_and_out_of_range_tables() {
        let mut m = image();
        put(&mut m.0, 0, &0u32.to_le_bytes());
        assert_eq!(BootInfo::parse(&&m, 0).unwrap_err(), Error::BadMagic(0));

        let mut m = image();
        put(&mut m.0, 40, &0xffff_ffffu64.to_le_bytes());
        assert_eq!(BootInfo::parse(&&m, 0).unwrap_err(), Error::MemmapUnreadable);

        let mut m = image();
        put(&mut m.0, 12, &100_000u32.to_le_bytes());
        assert_eq!(BootInfo::parse(&&m, 0).unwrap_err(), Error::ModlistUnreadable);

        let m = image();
        assert_eq!(BootInfo::parse(&&m, 0x2ff0).unwrap_err(), Error::StartInfoUnreadable);
    }

    #[test]
    fn unterminated_cmdline_is_cut_at_readable_end() {
        let mut m = image();
        let len = m.0.len();
        put(&mut m.0, 24, &((len - 4) as u64).to_le_bytes());
        put(&mut m.0, len - 4, b"abcd");
        let info = BootInfo::parse(&&m, 0).unwrap();
        assert_eq!(info.cmdline(), b"abcd");
    }
}
