//! Capabilities: per-task tables of typed, rights-carrying references to kernel objects.
//!
//! Invariants: a slot is either empty or names a live object (the kernel drops every cap to
//! an object before freeing it); a derived cap never has more rights than its source; a
//! badge, once set, cannot be changed by deriving. A system call reaches an object through
//! a capability only by [`CapTable::lookup`], which names the object's kind and the rights
//! the call needs (docs/ARCHITECTURE.md has the table); [`CapTable::to_copy`] hands out a
//! capability only to be copied (derive, grant, transfer), never to reach its object.

use l4_abi::syscall::{rights, Error};

pub mod calls;

/// No object: the object number (a table index, u16 as in [`Object`]) that names
/// nothing, in every table's links and owner fields.
pub const NONE: u16 = u16::MAX;

/// Capability slots per task.
pub const SLOTS: usize = 64;

/// What a capability refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Object {
    #[default]
    Null,
    /// An IPC endpoint (index into the kernel's endpoints).
    Endpoint(u16),
    /// A notification: a word of signal bits (index into the kernel's notifications).
    Notification(u16),
    /// A task (index into the kernel's tasks).
    Task(u16),
    /// A read-only boot file (index into the kernel's boot files).
    BootFile(u16),
    /// A memory object: pages that can be mapped into several address spaces.
    Memory(u16),
    /// A ring channel (its rings live in a memory object).
    Ring(u16),
    /// The right to end the virtual machine.
    Machine,
}

/// The kind of object a lookup asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Endpoint,
    Notification,
    Task,
    BootFile,
    Memory,
    Ring,
    Machine,
}

impl Kind {
    /// Every kind, for tests that try each.
    pub const ALL: [Kind; 7] =
        [Kind::Endpoint, Kind::Notification, Kind::Task, Kind::BootFile, Kind::Memory, Kind::Ring, Kind::Machine];
}

/// A capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Cap {
    pub object: Object,
    pub rights: u64,
    pub badge: u64,
}

impl Cap {
    pub const NULL: Cap = Cap { object: Object::Null, rights: 0, badge: 0 };

    pub const fn new(object: Object, rights: u64) -> Self {
        Cap { object, rights, badge: 0 }
    }
}

/// One task's capability table.
#[derive(Clone, Copy, Debug)]
pub struct CapTable {
    slots: [Cap; SLOTS],
}

impl Default for CapTable {
    fn default() -> Self {
        CapTable::EMPTY
    }
}

impl CapTable {
    pub const EMPTY: CapTable = CapTable { slots: [Cap::NULL; SLOTS] };

    /// The cap in `slot`, if any.
    #[inline(always)]
    fn get(&self, slot: u64) -> Result<Cap, Error> {
        let c = *self.slots.get(usize::try_from(slot).map_err(|_| Error::InvalidCap)?).ok_or(Error::InvalidCap)?;
        if c.object == Object::Null {
            return Err(Error::InvalidCap);
        }
        Ok(c)
    }

    /// The object of `kind` that the cap in `slot` names, and the cap, if the cap has
    /// every right in `need`: the one way a system call reaches an object through a
    /// capability. Errors, checked in this order: `InvalidCap` (no such slot, or empty),
    /// `WrongType`, `NoRights`.
    #[inline(always)]
    pub fn lookup(&self, slot: u64, kind: Kind, need: u64) -> Result<(u16, Cap), Error> {
        let c = self.slots.get(usize::try_from(slot).map_err(|_| Error::InvalidCap)?).ok_or(Error::InvalidCap)?;
        // (kind, object) pairs: with `kind` a constant this is one compare.
        let i = match (kind, c.object) {
            (_, Object::Null) => return Err(Error::InvalidCap),
            (Kind::Endpoint, Object::Endpoint(i))
            | (Kind::Notification, Object::Notification(i))
            | (Kind::Task, Object::Task(i))
            | (Kind::BootFile, Object::BootFile(i))
            | (Kind::Memory, Object::Memory(i))
            | (Kind::Ring, Object::Ring(i)) => i,
            (Kind::Machine, Object::Machine) => 0,
            _ => return Err(Error::WrongType),
        };
        if c.rights & need != need {
            return Err(Error::NoRights);
        }
        Ok((i, *c))
    }

    /// The cap in `slot`, to be copied somewhere (derived, granted, sent along a message
    /// whose channel carries GRANT): what the copy may do is the cap's own rights, so
    /// copying needs none on it; the copy reaches nothing until it is looked up.
    #[inline(always)]
    pub fn to_copy(&self, slot: u64) -> Result<Cap, Error> {
        self.get(slot)
    }

    /// Puts `cap` in `slot` (which must be empty).
    pub fn set(&mut self, slot: u8, cap: Cap) -> Result<(), Error> {
        let s = self.slots.get_mut(slot as usize).ok_or(Error::InvalidCap)?;
        if s.object != Object::Null {
            return Err(Error::Exists);
        }
        *s = cap;
        Ok(())
    }

    /// The lowest free slot (what [`CapTable::insert`] would fill).
    pub fn free_slot(&self) -> Result<u8, Error> {
        Ok(self.slots.iter().position(|s| s.object == Object::Null).ok_or(Error::NoSlots)? as u8)
    }

    /// Puts `cap` in the lowest free slot.
    pub fn insert(&mut self, cap: Cap) -> Result<u8, Error> {
        let i = self.free_slot()?;
        self.slots[i as usize] = cap;
        Ok(i)
    }

    /// A copy of `slot` with `mask` rights at most and, if the source has none, `badge`.
    pub fn derive(&mut self, slot: u64, mask: u64, badge: u64) -> Result<u8, Error> {
        let c = self.get(slot)?;
        if badge != 0 && c.badge != 0 {
            return Err(Error::BadArgument);
        }
        let new = Cap {
            object: c.object,
            rights: c.rights & mask & rights::ALL,
            badge: if c.badge != 0 { c.badge } else { badge },
        };
        self.insert(new)
    }

    /// Empties `slot` and returns what was there.
    pub fn take(&mut self, slot: u64) -> Result<Cap, Error> {
        let c = self.get(slot)?;
        self.slots[slot as usize] = Cap::NULL;
        Ok(c)
    }

    /// Every non-empty slot.
    pub fn iter(&self) -> impl Iterator<Item = (usize, Cap)> + '_ {
        self.slots.iter().copied().enumerate().filter(|(_, c)| c.object != Object::Null)
    }

    /// Empties every slot naming `object`; returns how many there were.
    pub fn revoke(&mut self, object: Object) -> usize {
        let mut n = 0;
        for s in self.slots.iter_mut().filter(|s| s.object == object) {
            *s = Cap::NULL;
            n += 1;
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derive_narrows_rights_and_keeps_badges() {
        let mut t = CapTable::default();
        let s = t.insert(Cap::new(Object::Endpoint(3), rights::ALL)).unwrap();
        let d = t.derive(s as u64, rights::SEND, 42).unwrap();
        let c = t.get(d as u64).unwrap();
        assert_eq!((c.rights, c.badge), (rights::SEND, 42));
        assert_eq!(t.derive(d as u64, rights::ALL, 7), Err(Error::BadArgument), "badge is fixed");
        let dd = t.derive(d as u64, rights::ALL, 0).unwrap();
        assert_eq!(t.get(dd as u64).unwrap().rights, rights::SEND, "rights never grow");
        assert_eq!(t.lookup(d as u64, Kind::Endpoint, rights::RECV), Err(Error::NoRights));
        assert_eq!(t.lookup(d as u64, Kind::Endpoint, rights::SEND).unwrap().0, 3);
    }

    #[test]
    fn errors_for_bad_slots_and_types() {
        let mut t = CapTable::default();
        assert_eq!(t.get(0), Err(Error::InvalidCap));
        assert_eq!(t.get(SLOTS as u64), Err(Error::InvalidCap));
        assert_eq!(t.get(u64::MAX), Err(Error::InvalidCap));
        t.set(5, Cap::new(Object::Machine, 0)).unwrap();
        assert_eq!(t.set(5, Cap::new(Object::Machine, 0)), Err(Error::Exists));
        assert_eq!(t.lookup(5, Kind::Endpoint, 0), Err(Error::WrongType));
        assert_eq!(t.lookup(5, Kind::Machine, rights::CONTROL), Err(Error::NoRights));
        assert_eq!(t.lookup(6, Kind::Machine, 0), Err(Error::InvalidCap));
        assert_eq!(t.take(5).unwrap().object, Object::Machine);
        assert_eq!(t.take(5), Err(Error::InvalidCap));
        for _ in 0..SLOTS {
            t.insert(Cap::new(Object::Task(1), 0)).unwrap();
        }
        assert_eq!(t.insert(Cap::new(Object::Task(1), 0)), Err(Error::NoSlots));
        assert_eq!(t.revoke(Object::Task(1)), SLOTS);
    }

    #[test]
    fn lookup_checks_slot_then_kind_then_every_needed_right() {
        let objects = [
            (Object::Endpoint(1), 1),
            (Object::Notification(2), 2),
            (Object::Task(3), 3),
            (Object::BootFile(4), 4),
            (Object::Memory(5), 5),
            (Object::Ring(6), 6),
            (Object::Machine, 0),
        ];
        for (kind, (o, index)) in Kind::ALL.into_iter().zip(objects) {
            let mut t = CapTable::default();
            let full = t.insert(Cap::new(o, rights::ALL)).unwrap() as u64;
            assert_eq!(t.lookup(full, kind, rights::ALL).unwrap().0, index);
            for other in Kind::ALL.into_iter().filter(|&k| k != kind) {
                assert_eq!(t.lookup(full, other, 0), Err(Error::WrongType), "{o:?} as {other:?}");
            }
            for right in [rights::SEND, rights::RECV, rights::GRANT, rights::CONTROL] {
                let less = t.derive(full, rights::ALL & !right, 0).unwrap() as u64;
                assert_eq!(t.lookup(less, kind, right), Err(Error::NoRights), "{o:?} without {right:#x}");
                assert_eq!(t.lookup(less, kind, rights::ALL & !right).unwrap().0, index);
            }
        }
    }
}
