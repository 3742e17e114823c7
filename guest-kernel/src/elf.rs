//! Reading a user ELF image (a server from the boot archive) for loading.
//!
//! Invariants: only 64-bit little-endian x86_64 `ET_EXEC` files pass; every `PT_LOAD`
//! segment's file bytes lie inside the image, its memory range inside
//! `[USER_MIN, USER_MAP_MAX)` without wrapping, with `filesz <= memsz`; the entry point
//! lies in an executable segment. Anything else is refused before a page is mapped.

use l4_abi::layout::{USER_MAP_MAX, USER_MIN};

/// A loadable segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment<'a> {
    pub vaddr: u64,
    pub memsz: u64,
    pub data: &'a [u8],
    pub writable: bool,
    pub executable: bool,
}

/// A checked ELF image.
#[derive(Clone, Copy, Debug)]
pub struct Image<'a> {
    bytes: &'a [u8],
    phoff: usize,
    phnum: usize,
    pub entry: u64,
}

/// Why an image was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadElf(pub &'static str);

fn u16le(b: &[u8], o: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(o..o + 2)?.try_into().ok()?))
}
fn u32le(b: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?))
}
fn u64le(b: &[u8], o: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(o..o + 8)?.try_into().ok()?))
}

impl<'a> Image<'a> {
    /// Checks `bytes`.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, BadElf> {
        let trunc = BadElf("truncated");
        if bytes.get(..4) != Some(b"\x7fELF") {
            return Err(BadElf("no ELF magic"));
        }
        if bytes.get(4) != Some(&2) || bytes.get(5) != Some(&1) {
            return Err(BadElf("not 64-bit little-endian"));
        }
        if u16le(bytes, 16).ok_or(trunc)? != 2 || u16le(bytes, 18).ok_or(trunc)? != 62 {
            return Err(BadElf("not an x86_64 executable"));
        }
        let entry = u64le(bytes, 24).ok_or(trunc)?;
        let phoff = usize::try_from(u64le(bytes, 32).ok_or(trunc)?).map_err(|_| trunc)?;
        let phentsize = u16le(bytes, 54).ok_or(trunc)? as usize;
        let phnum = u16le(bytes, 56).ok_or(trunc)? as usize;
        if phentsize != 56 || phnum == 0 || phnum > 64 {
            return Err(BadElf("bad program headers"));
        }
        let end = phoff.checked_add(56 * phnum).ok_or(trunc)?;
        if end > bytes.len() {
            return Err(trunc);
        }
        let img = Image { bytes, phoff, phnum, entry };
        let mut entry_ok = false;
        for s in img.segments() {
            let s = s?;
            if s.executable && s.vaddr <= entry && entry < s.vaddr + s.memsz {
                entry_ok = true;
            }
        }
        if !entry_ok {
            return Err(BadElf("entry point outside executable segments"));
        }
        Ok(img)
    }

    /// The `PT_LOAD` segments, each checked.
    pub fn segments(&self) -> impl Iterator<Item = Result<Segment<'a>, BadElf>> + '_ {
        (0..self.phnum).filter_map(move |i| {
            let p = self.phoff + 56 * i;
            let b = self.bytes;
            let ty = u32le(b, p)?;
            if ty != 1 {
                return None;
            }
            Some((|| {
                let trunc = BadElf("truncated");
                let flags = u32le(b, p + 4).ok_or(trunc)?;
                let offset = u64le(b, p + 8).ok_or(trunc)?;
                let vaddr = u64le(b, p + 16).ok_or(trunc)?;
                let filesz = u64le(b, p + 32).ok_or(trunc)?;
                let memsz = u64le(b, p + 40).ok_or(trunc)?;
                if filesz > memsz {
                    return Err(BadElf("filesz > memsz"));
                }
                let vend = vaddr.checked_add(memsz).ok_or(BadElf("segment wraps"))?;
                if vaddr < USER_MIN || vend > USER_MAP_MAX {
                    return Err(BadElf("segment outside user memory"));
                }
                let fend = offset.checked_add(filesz).ok_or(trunc)?;
                let data = b.get(offset as usize..fend as usize).ok_or(trunc)?;
                Ok(Segment { vaddr, memsz, data, writable: flags & 2 != 0, executable: flags & 1 != 0 })
            })())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn elf(entry: u64, segs: &[(u64, u32, &[u8], u64)]) -> Vec<u8> {
        let mut b = vec![0u8; 64 + 56 * segs.len()];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2;
        b[5] = 1;
        b[16..18].copy_from_slice(&2u16.to_le_bytes());
        b[18..20].copy_from_slice(&62u16.to_le_bytes());
        b[24..32].copy_from_slice(&entry.to_le_bytes());
        b[32..40].copy_from_slice(&64u64.to_le_bytes());
        b[54..56].copy_from_slice(&56u16.to_le_bytes());
        b[56..58].copy_from_slice(&(segs.len() as u16).to_le_bytes());
        for (i, (va, flags, data, memsz)) in segs.iter().enumerate() {
            let off = b.len() as u64;
            b.extend_from_slice(data);
            let p = 64 + 56 * i;
            b[p..p + 4].copy_from_slice(&1u32.to_le_bytes());
            b[p + 4..p + 8].copy_from_slice(&flags.to_le_bytes());
            b[p + 8..p + 16].copy_from_slice(&off.to_le_bytes());
            b[p + 16..p + 24].copy_from_slice(&va.to_le_bytes());
            b[p + 32..p + 40].copy_from_slice(&(data.len() as u64).to_le_bytes());
            b[p + 40..p + 48].copy_from_slice(&memsz.to_le_bytes());
        }
        b
    }

    #[test]
    fn accepts_a_server_image() {
        let b = elf(0x400010, &[(0x400000, 5, b"code", 0x1000), (0x401000, 6, b"data", 0x2000)]);
        let img = Image::parse(&b).unwrap();
        let segs: Vec<_> = img.segments().map(|s| s.unwrap()).collect();
        assert_eq!(segs.len(), 2);
        assert!(segs[0].executable && !segs[0].writable);
        assert_eq!(segs[1].data, b"data");
        assert_eq!(img.entry, 0x400010);
    }

    #[test]
    fn refuses_bad_images() {
        assert_eq!(Image::parse(b"nope").unwrap_err(), BadElf("no ELF magic"));
        let kernel_half = elf(0xffff_8000_0000_0000, &[(0xffff_8000_0000_0000, 5, b"x", 0x1000)]);
        assert_eq!(Image::parse(&kernel_half).unwrap_err(), BadElf("segment outside user memory"));
        let wrap = elf(0x400000, &[(0x400000, 5, b"x", u64::MAX)]);
        assert_eq!(Image::parse(&wrap).unwrap_err(), BadElf("segment wraps"));
        let no_entry = elf(0x900000, &[(0x400000, 5, b"x", 0x1000)]);
        assert!(Image::parse(&no_entry).is_err());
        let good = elf(0x400000, &[(0x400000, 5, b"code", 0x1000)]);
        for cut in 0..good.len() {
            assert!(Image::parse(&good[..cut]).is_err(), "cut at {cut}");
        }
    }
}
