//! Finding the CPUs: ACPI RSDP -> XSDT (or RSDT) -> MADT, read through a bounds-checked
//! [`PhysMem`].
//!
//! Invariants: every table's signature, length and checksum are checked before its
//! contents are used; at most [`MAX_CPUS`] CPUs are reported; malformed tables yield
//! "no MADT" (one CPU), never a panic.

use super::pvh::PhysMem;

/// The most CPUs the kernel looks at.
pub const MAX_CPUS: usize = 64;

/// The CPUs found in the MADT.
#[derive(Clone, Copy, Debug)]
pub struct Cpus {
    pub apic_ids: [u8; MAX_CPUS],
    pub count: usize,
    pub lapic_addr: u32,
}

fn checksum_ok(b: &[u8]) -> bool {
    b.iter().fold(0u8, |a, &x| a.wrapping_add(x)) == 0
}

fn le32(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}

/// A whole table at `pa`, checked (signature, length, checksum).
fn table<'a, M: PhysMem<'a>>(mem: &M, pa: u64, sig: &[u8; 4]) -> Option<&'a [u8]> {
    let head = mem.bytes(pa, 36)?;
    if &head[..4] != sig {
        return None;
    }
    let len = le32(head, 4) as usize;
    if !(36..=1 << 20).contains(&len) {
        return None;
    }
    let t = mem.bytes(pa, len)?;
    checksum_ok(t).then_some(t)
}

/// Finds the RSDP: at `hint` if non-zero, else in the BIOS area 0xe0000-0xfffff.
pub fn find_rsdp<'a, M: PhysMem<'a>>(mem: &M, hint: u64) -> Option<u64> {
    let valid = |pa: u64| mem.bytes(pa, 20).is_some_and(|b| &b[..8] == b"RSD PTR " && checksum_ok(b));
    if hint != 0 {
        return valid(hint).then_some(hint);
    }
    (0xe_0000u64..0x10_0000).step_by(16).find(|&pa| valid(pa))
}

/// The CPUs in the MADT reachable from the RSDP at `rsdp`.
pub fn cpus<'a, M: PhysMem<'a>>(mem: &M, rsdp: u64) -> Option<Cpus> {
    let r = mem.bytes(rsdp, 36)?;
    let (entries, wide) = if r[15] >= 2 {
        let xsdt = u64::from_le_bytes(r[24..32].try_into().ok()?);
        (table(mem, xsdt, b"XSDT")?, true)
    } else {
        (table(mem, u64::from(le32(r, 16)), b"RSDT")?, false)
    };
    let step = if wide { 8 } else { 4 };
    let madt = entries[36..].chunks_exact(step).find_map(|e| {
        let pa = if wide { u64::from_le_bytes(e.try_into().ok()?) } else { u64::from(le32(e, 0)) };
        table(mem, pa, b"APIC")
    })?;
    let mut cpus = Cpus { apic_ids: [0; MAX_CPUS], count: 0, lapic_addr: le32(madt, 36) };
    let mut off = 44;
    while off + 2 <= madt.len() {
        let (ty, len) = (madt[off], madt[off + 1] as usize);
        if len < 2 || off + len > madt.len() {
            break;
        }
        // Type 0: processor local APIC (uid, APIC ID, flags: bit 0 enabled, bit 1 can be).
        if ty == 0 && len >= 8 && le32(madt, off + 4) & 3 != 0 && cpus.count < MAX_CPUS {
            cpus.apic_ids[cpus.count] = madt[off + 3];
            cpus.count += 1;
        }
        off += len;
    }
    Some(cpus)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Mem(Vec<u8>);
    impl<'a> PhysMem<'a> for &'a Mem {
        fn bytes(&self, paddr: u64, len: usize) -> Option<&'a [u8]> {
            let s = usize::try_from(paddr).ok()?;
            self.0.get(s..s.checked_add(len)?)
        }
    }

    fn fix(t: &mut [u8], at: usize) {
        t[at] = 0;
        let s = t.iter().fold(0u8, |a, &x| a.wrapping_add(x));
        t[at] = 0u8.wrapping_sub(s);
    }

    fn machine(ncpu: u8) -> Mem {
        let mut m = vec![0u8; 0x10_0000];
        // RSDP v2 at 0xe0000 -> XSDT at 0xe1000 -> MADT at 0xe2000.
        let r = 0xe_0000;
        m[r..r + 8].copy_from_slice(b"RSD PTR ");
        m[r + 15] = 2;
        m[r + 24..r + 32].copy_from_slice(&0xe_1000u64.to_le_bytes());
        let mut rs = m[r..r + 20].to_vec();
        fix(&mut rs, 8);
        m[r..r + 20].copy_from_slice(&rs);
        let x = 0xe_1000;
        m[x..x + 4].copy_from_slice(b"XSDT");
        m[x + 4..x + 8].copy_from_slice(&44u32.to_le_bytes());
        m[x + 36..x + 44].copy_from_slice(&0xe_2000u64.to_le_bytes());
        let mut xs = m[x..x + 44].to_vec();
        fix(&mut xs, 9);
        m[x..x + 44].copy_from_slice(&xs);
        let a = 0xe_2000;
        let len = 44 + 8 * ncpu as usize + 12;
        m[a..a + 4].copy_from_slice(b"APIC");
        m[a + 4..a + 8].copy_from_slice(&(len as u32).to_le_bytes());
        m[a + 36..a + 40].copy_from_slice(&0xfee0_0000u32.to_le_bytes());
        for i in 0..ncpu as usize {
            let e = a + 44 + 8 * i;
            m[e] = 0;
            m[e + 1] = 8;
            m[e + 2] = i as u8;
            m[e + 3] = i as u8 * 2;
            m[e + 4] = 1;
        }
        let io = a + 44 + 8 * ncpu as usize;
        m[io] = 1;
        m[io + 1] = 12;
        let mut ms = m[a..a + len].to_vec();
        fix(&mut ms, 9);
        m[a..a + len].copy_from_slice(&ms);
        Mem(m)
    }

    #[test]
    fn finds_cpus_by_hint_or_by_scanning() {
        let m = machine(3);
        let mem = &m;
        let r = find_rsdp(&mem, 0).unwrap();
        assert_eq!(r, 0xe_0000);
        assert_eq!(find_rsdp(&mem, 0xe_0000), Some(0xe_0000));
        let c = cpus(&mem, r).unwrap();
        assert_eq!(&c.apic_ids[..c.count], &[0, 2, 4]);
        assert_eq!(c.lapic_addr, 0xfee0_0000);
    }

    #[test]
    fn bad_checksums_and_lengths_mean_no_madt() {
        let mut m = machine(2);
        m.0[0xe_2000 + 50] ^= 1; // break the MADT checksum
        assert!(cpus(&&m, 0xe_0000).is_none());
        let mut m = machine(2);
        m.0[0xe_2000 + 4..0xe_2000 + 8].copy_from_slice(&0xffff_ffffu32.to_le_bytes());
        assert!(cpus(&&m, 0xe_0000).is_none());
        assert_eq!(find_rsdp(&&Mem(vec![0; 0x10_0000]), 0), None);
    }
}
