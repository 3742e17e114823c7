//! The boot archive: a cpio "newc" archive (the format of Linux's initramfs), so that one
//! boot module carries every server and QEMU's single `-initrd` module boots the same way
//! as l4vmm.
//!
//! Invariants: every returned name and data slice lies inside the archive; a malformed
//! header ends iteration (it never panics or reads out of bounds).

/// One file in the archive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry<'a> {
    pub name: &'a [u8],
    pub data: &'a [u8],
}

const HEADER: usize = 110;

fn hex(field: &[u8]) -> Option<usize> {
    let mut v = 0usize;
    for &c in field {
        let d = (c as char).to_digit(16)? as usize;
        v = v.checked_mul(16)?.checked_add(d)?;
    }
    Some(v)
}

fn align4(x: usize) -> usize {
    (x + 3) & !3
}

/// Whether `bytes` starts like a newc archive.
pub fn is_cpio(bytes: &[u8]) -> bool {
    bytes.starts_with(b"070701")
}

/// The regular files of a newc archive, in order.
pub fn entries(archive: &[u8]) -> impl Iterator<Item = Entry<'_>> {
    let mut off = 0usize;
    core::iter::from_fn(move || loop {
        let h = archive.get(off..off.checked_add(HEADER)?)?;
        if &h[..6] != b"070701" {
            return None;
        }
        let mode = hex(&h[14..22])?;
        let filesize = hex(&h[54..62])?;
        let namesize = hex(&h[94..102])?;
        let name_start = off + HEADER;
        let name = archive.get(name_start..name_start.checked_add(namesize)?)?;
        let name = name.strip_suffix(b"\0").unwrap_or(name);
        let data_start = align4(name_start + namesize);
        let data = archive.get(data_start..data_start.checked_add(filesize)?)?;
        off = align4(data_start + filesize);
        if name == b"TRAILER!!!" {
            return None;
        }
        if mode & 0o170000 == 0o100000 {
            return Some(Entry { name, data });
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &str, size: usize, mode: u32) -> Vec<u8> {
        let mut h = format!(
            "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            1,
            mode,
            0,
            0,
            1,
            0,
            size,
            0,
            0,
            0,
            0,
            name.len() + 1,
            0
        )
        .into_bytes();
        h.extend_from_slice(name.as_bytes());
        h.push(0);
        while h.len() % 4 != 0 {
            h.push(0);
        }
        h
    }

    fn archive(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut a = Vec::new();
        for (n, d) in files {
            a.extend(header(n, d.len(), 0o100644));
            a.extend_from_slice(d);
            while a.len() % 4 != 0 {
                a.push(0);
            }
        }
        a.extend(header("TRAILER!!!", 0, 0));
        a
    }

    #[test]
    fn lists_files_in_order() {
        let a = archive(&[("root", b"\x7fELFroot"), ("echo", b"e"), ("client", b"")]);
        assert!(is_cpio(&a));
        let e: Vec<_> = entries(&a).collect();
        assert_eq!(e.len(), 3);
        assert_eq!((e[0].name, e[0].data), (&b"root"[..], &b"\x7fELFroot"[..]));
        assert_eq!((e[1].name, e[1].data), (&b"echo"[..], &b"e"[..]));
        assert_eq!(e[2].data, b"");
    }

    #[test]
    fn truncated_or_garbage_archives_end_quietly() {
        let a = archive(&[("root", b"0123456789")]);
        for cut in 0..a.len() {
            let _ = entries(&a[..cut]).count();
        }
        let mut bad = a.clone();
        bad[60] = b'z'; // filesize field
        assert_eq!(entries(&bad).count(), 0);
        assert_eq!(entries(b"hello").count(), 0);
    }
}
