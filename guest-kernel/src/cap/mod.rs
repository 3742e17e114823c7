//! Capabilities: per-task tables of typed, rights-carrying references to kernel objects.
//!
//! Invariants: a slot is either empty or names a live object (the kernel drops every cap to
//! an object before freeing it); a derived cap never has more rights than its source; a
//! badge, once set, cannot be changed by deriving; every lookup checks type and rights.

use l4_abi::syscall::{rights, Error};

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
    pub fn get(&self, slot: u64) -> Result<Cap, Error> {
        let c = *self.slots.get(usize::try_from(slot).map_err(|_| Error::InvalidCap)?).ok_or(Error::InvalidCap)?;
        if c.object == Object::Null {
            return Err(Error::InvalidCap);
        }
        Ok(c)
    }

    /// The endpoint in `slot`, checking that the cap has `need` rights.
    pub fn endpoint(&self, slot: u64, need: u64) -> Result<(u16, Cap), Error> {
        let c = self.get(slot)?;
        let Object::Endpoint(ep) = c.object else { return Err(Error::WrongType) };
        if c.rights & need != need {
            return Err(Error::NoRights);
        }
        Ok((ep, c))
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

    /// Puts `cap` in the lowest free slot.
    pub fn insert(&mut self, cap: Cap) -> Result<u8, Error> {
        let i = self.slots.iter().position(|s| s.object == Object::Null).ok_or(Error::NoSlots)?;
        self.slots[i] = cap;
        Ok(i as u8)
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
        assert_eq!(t.endpoint(d as u64, rights::RECV), Err(Error::NoRights));
        assert_eq!(t.endpoint(d as u64, rights::SEND).unwrap().0, 3);
    }

    #[test]
    fn errors_for_bad_slots_and_types() {
        let mut t = CapTable::default();
        assert_eq!(t.get(0), Err(Error::InvalidCap));
        assert_eq!(t.get(SLOTS as u64), Err(Error::InvalidCap));
        assert_eq!(t.get(u64::MAX), Err(Error::InvalidCap));
        t.set(5, Cap::new(Object::Machine, 0)).unwrap();
        assert_eq!(t.set(5, Cap::new(Object::Machine, 0)), Err(Error::Exists));
        assert_eq!(t.endpoint(5, 0), Err(Error::WrongType));
        assert_eq!(t.take(5).unwrap().object, Object::Machine);
        assert_eq!(t.take(5), Err(Error::InvalidCap));
        for _ in 0..SLOTS {
            t.insert(Cap::new(Object::Task(1), 0)).unwrap();
        }
        assert_eq!(t.insert(Cap::new(Object::Task(1), 0)), Err(Error::NoSlots));
        assert_eq!(t.revoke(Object::Task(1)), SLOTS);
    }
}
