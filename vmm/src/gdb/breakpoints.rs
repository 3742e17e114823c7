//! The four x86 debug-register slots: hardware breakpoints, watchpoints, and (on hosts
//! where KVM cannot intercept `int3` in the guest's ring 0) software breakpoints served
//! from hardware slots.
//!
//! Invariant: `dr7()` enables exactly the occupied slots, with the RW/LEN bits of their
//! kind; an address appears at most once per kind.

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// What a slot watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotKind {
    /// Instruction execution at the address. `from_sw` records that gdb asked for a
    /// software breakpoint, so the stop is reported as one.
    Exec { from_sw: bool },
    /// Data writes of `len` bytes (1, 2, 4 or 8).
    Write { len: u8 },
    /// Data reads or writes of `len` bytes.
    Access { len: u8 },
}

/// One occupied slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    pub addr: u64,
    pub kind: SlotKind,
}

/// Why a slot could not be taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotError {
    /// All four debug registers are in use.
    Full,
    /// x86 debug registers watch 1, 2, 4 or 8 naturally aligned bytes.
    BadLength,
}

/// DR0-DR3 and the DR7 they imply.
#[derive(Debug, Default, Clone)]
pub struct HwSlots {
    slots: [Option<Slot>; 4],
}

impl HwSlots {
    /// Takes a free slot.
    pub fn insert(&mut self, slot: Slot) -> Result<(), SlotError> {
        if let SlotKind::Write { len } | SlotKind::Access { len } = slot.kind {
            if !matches!(len, 1 | 2 | 4 | 8) || slot.addr % u64::from(len) != 0 {
                return Err(SlotError::BadLength);
            }
        }
        if self.slots.contains(&Some(slot)) {
            return Ok(());
        }
        let free = self.slots.iter_mut().find(|s| s.is_none()).ok_or(SlotError::Full)?;
        *free = Some(slot);
        Ok(())
    }

    /// Frees the slot holding exactly `slot`; false if there is none.
    pub fn remove(&mut self, slot: Slot) -> bool {
        match self.slots.iter_mut().find(|s| **s == Some(slot)) {
            Some(s) => {
                *s = None;
                true
            }
            None => false,
        }
    }

    /// The slot that DR6 bit `index` reports.
    pub fn get(&self, index: usize) -> Option<Slot> {
        self.slots.get(index).copied().flatten()
    }

    /// How many slots are free.
    pub fn free(&self) -> usize {
        self.slots.iter().filter(|s| s.is_none()).count()
    }

    /// DR0-DR3.
    pub fn addrs(&self) -> [u64; 4] {
        self.slots.map(|s| s.map_or(0, |s| s.addr))
    }

    /// DR7 for the occupied slots (global enable, exact-match bit GE set).
    pub fn dr7(&self) -> u64 {
        let mut dr7 = 0u64;
        for (i, s) in self.slots.iter().enumerate() {
            let Some(s) = s else { continue };
            let (rw, len) = match s.kind {
                SlotKind::Exec { .. } => (0b00, 1),
                SlotKind::Write { len } => (0b01, len),
                SlotKind::Access { len } => (0b11, len),
            };
            let len_bits = match len {
                1 => 0b00,
                2 => 0b01,
                8 => 0b10,
                _ => 0b11,
            };
            dr7 |= 1 << (2 * i + 1);
            dr7 |= (rw | (len_bits << 2)) << (16 + 4 * i);
        }
        if dr7 != 0 {
            dr7 |= 1 << 9; // GE
        }
        dr7
    }

    /// Whether any slot is in use.
    pub fn any(&self) -> bool {
        self.slots.iter().any(Option::is_some)
    }

    /// Frees every slot.
    pub fn clear(&mut self) {
        self.slots = [None; 4];
    }
}

/// Software breakpoints planted as `int3` bytes in guest memory, by guest-virtual
/// address, each with the guest-physical byte it sits on and the byte it replaced.
///
/// Invariant: every entry on one physical byte records that byte's original value (the
/// first planting's), and memory is restored only when the last entry on it goes, so
/// two virtual addresses of one byte (a frame mapped twice) never leave an `int3` behind.
#[derive(Default)]
pub struct Planted(std::collections::HashMap<u64, (u64, u8)>);

impl Planted {
    /// Plants a breakpoint at `va`, whose byte is at `pa`. Err: `pa` is not guest RAM.
    pub fn plant(&mut self, memory: &GuestMemoryMmap, va: u64, pa: u64) -> Result<(), ()> {
        let old = match self.0.values().find(|&&(p, _)| p == pa) {
            Some(&(_, o)) => o,
            None => memory.read_obj(GuestAddress(pa)).map_err(|_| ())?,
        };
        memory.write_obj(0xccu8, GuestAddress(pa)).map_err(|_| ())?;
        self.0.entry(va).or_insert((pa, old));
        Ok(())
    }

    /// Lifts the breakpoint at `va`: `None` if there was none, else whether memory could
    /// be written (it is only once no other address keeps a breakpoint on the byte).
    pub fn lift(&mut self, memory: &GuestMemoryMmap, va: u64) -> Option<Result<(), ()>> {
        let (pa, old) = self.0.remove(&va)?;
        if self.0.values().any(|&(p, _)| p == pa) {
            return Some(Ok(()));
        }
        Some(memory.write_obj(old, GuestAddress(pa)).map_err(|_| ()))
    }

    /// Lifts every breakpoint (gdb detached or killed).
    pub fn lift_all(&mut self, memory: &GuestMemoryMmap) {
        for (_, (pa, old)) in self.0.drain() {
            let _ = memory.write_obj(old, GuestAddress(pa));
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Every planted address with the byte it replaced (to show gdb the original bytes).
    pub fn originals(&self) -> impl Iterator<Item = (u64, u8)> + '_ {
        self.0.iter().map(|(&va, &(_, old))| (va, old))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn four_slots_then_full() {
        let mut s = HwSlots::default();
        for i in 0..4 {
            s.insert(Slot { addr: 0x1000 + i, kind: SlotKind::Exec { from_sw: false } }).unwrap();
        }
        assert_eq!(s.insert(Slot { addr: 0x9000, kind: SlotKind::Exec { from_sw: true } }), Err(SlotError::Full));
        assert!(s.remove(Slot { addr: 0x1001, kind: SlotKind::Exec { from_sw: false } }));
        assert_eq!(s.free(), 1);
        s.insert(Slot { addr: 0x9000, kind: SlotKind::Exec { from_sw: true } }).unwrap();
        assert_eq!(s.get(1).unwrap().addr, 0x9000);
    }

    #[test]
    fn dr7_encodes_kind_and_length() {
        let mut s = HwSlots::default();
        s.insert(Slot { addr: 0x1000, kind: SlotKind::Exec { from_sw: false } }).unwrap();
        s.insert(Slot { addr: 0x2000, kind: SlotKind::Write { len: 8 } }).unwrap();
        s.insert(Slot { addr: 0x3000, kind: SlotKind::Access { len: 4 } }).unwrap();
        let dr7 = s.dr7();
        assert_eq!(dr7 & 0xff, 0b10_1010); // G0, G1, G2
        assert_eq!((dr7 >> 16) & 0xf, 0b0000); // exec, len 1
        assert_eq!((dr7 >> 20) & 0xf, 0b1001); // write, len 8
        assert_eq!((dr7 >> 24) & 0xf, 0b1111); // access, len 4
        assert_ne!(dr7 & (1 << 9), 0);
        assert_eq!(s.addrs(), [0x1000, 0x2000, 0x3000, 0]);
    }

    #[test]
    fn watch_lengths_must_be_aligned_powers_of_two() {
        let mut s = HwSlots::default();
        assert_eq!(s.insert(Slot { addr: 0x1000, kind: SlotKind::Write { len: 3 } }), Err(SlotError::BadLength));
        assert_eq!(s.insert(Slot { addr: 0x1001, kind: SlotKind::Write { len: 4 } }), Err(SlotError::BadLength));
        assert!(!s.any());
    }

    #[test]
    fn two_addresses_of_one_byte_restore_it_whatever_the_order() {
        for first_lifted in [0x1000u64, 0x2000] {
            let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 1 << 16)]).unwrap();
            mem.write_obj(0x90u8, GuestAddress(0x500)).unwrap();
            let mut p = Planted::default();
            p.plant(&mem, 0x1000, 0x500).unwrap();
            p.plant(&mem, 0x2000, 0x500).unwrap();
            let byte = |m: &GuestMemoryMmap| m.read_obj::<u8>(GuestAddress(0x500)).unwrap();
            assert_eq!(byte(&mem), 0xcc);
            assert!(p.originals().all(|(_, o)| o == 0x90), "both record the original");
            assert_eq!(p.lift(&mem, first_lifted), Some(Ok(())));
            assert_eq!(byte(&mem), 0xcc, "still planted through the other address");
            assert_eq!(p.lift(&mem, 0x3000 - first_lifted), Some(Ok(())));
            assert_eq!(byte(&mem), 0x90, "restored, not left an int3");
            assert_eq!(p.lift(&mem, 0x1000), None);
        }
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 1 << 16)]).unwrap();
        let mut p = Planted::default();
        p.plant(&mem, 0x1000, 0x500).unwrap();
        p.plant(&mem, 0x2000, 0x500).unwrap();
        p.lift_all(&mem);
        assert_eq!(mem.read_obj::<u8>(GuestAddress(0x500)).unwrap(), 0);
        assert!(p.plant(&mem, 0x3000, 1 << 20).is_err(), "outside RAM");
    }
}
