//! [`Region`]: a block of shared memory mapped into this process, the
//! building block under every shared type (the public ones in this module's
//! parent, the synchronization primitives).
//!
//! It owns the block's handle (fd / section handle) and one mapping of
//! it, unmaps and closes both on drop, and hands out what is sound for
//! its state (`sys::Shm` decides): a slice while it is exclusive to this
//! process or frozen, atomics while it is writable and shared, raw
//! pointers always. It crosses into a child like a `Connection` does: its handle
//! through `codec::handles` ([`duplicate_for_child`] / [`take_passed_handle`]),
//! written as a [`RegionWire`] (the token, the length, whether it is
//! frozen). The receiver checks the length against [`Region::MAX_LEN`]
//! before anything else, then lets `sys::shm_map` check the handle (what
//! it is, its size, its seals) before mapping it.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::Pages;
use crate::codec::handles::{duplicate_for_child, take_passed_handle};
use crate::encode;
use crate::error::{Error, Kind, Result};
use crate::sys::{self, ShmAccess};

/// A mapped block of shared memory (see the module docs and `sys::Shm`,
/// which it wraps: that is where the pointer becomes references).
#[derive(Debug)]
pub(crate) struct Region(sys::Shm);

/// The wire form of a [`Region`] (postcard, inside a value that is sent).
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RegionWire {
    /// The token of the block's handle (`duplicate_for_child`).
    pub token: u64,
    /// Its length in bytes, as the user sees it (the block itself has at
    /// least one byte).
    pub len: u64,
    /// It is frozen: mapped read-only, and sealed (Linux) or behind a
    /// read-only handle (Windows).
    pub frozen: bool,
}

impl RegionWire {
    /// Checks what can be checked before the handle is taken: the length
    /// against [`Region::MAX_LEN`], the frozen flag against what the
    /// receiving type expects. `Ok` with the length.
    pub(crate) fn check(&self, frozen: bool) -> std::result::Result<usize, String> {
        let len = usize::try_from(self.len)
            .ok()
            .filter(|&l| l <= Region::MAX_LEN)
            .ok_or_else(|| {
                format!(
                    "a shared-memory block of {} bytes is over the cap of {} bytes",
                    self.len,
                    Region::MAX_LEN
                )
            })?;
        match (self.frozen, frozen) {
            (true, false) => {
                Err("a frozen shared-memory block arrived where a writable one was expected".into())
            }
            (false, true) => {
                Err("a writable shared-memory block arrived where a frozen one was expected".into())
            }
            _ => Ok(len),
        }
    }
}

impl Region {
    /// The largest block, in bytes: 1 TiB (on 32-bit targets,
    /// `isize::MAX`). Checked on creation and, before mapping, on receipt.
    pub(crate) const MAX_LEN: usize = if usize::BITS >= 64 {
        1 << 40
    } else {
        isize::MAX as usize
    };

    /// A new zeroed, writable block of `len` bytes (0 is allowed), shared:
    /// it can be sent to other processes, which may write it at any time
    /// (so only atomics and raw pointers are handed out). Of the pages
    /// `pages` asks for, as [`new_exclusive_with`](Region::new_exclusive_with).
    pub(crate) fn new(len: usize, pages: Pages) -> Result<Region> {
        let mut r = Self::new_exclusive_with(len, pages)?;
        r.0.share();
        Ok(r)
    }

    /// A new zeroed, writable block of `len` bytes that stays in this
    /// process (it can't be sent) until [`freeze`](Region::freeze)d:
    /// [`bytes_mut`](Region::bytes_mut) works on it. Of huge pages where
    /// the system can give them (`Pages::Huge`, the default).
    pub(crate) fn new_exclusive(len: usize) -> Result<Region> {
        Self::new_exclusive_with(len, Pages::Huge)
    }

    /// The same, of the pages `pages` asks for (user data:
    /// `sys::ShmPages::HugeIfFree` for `Pages::Huge`, base pages for
    /// `Pages::Small`).
    pub(crate) fn new_exclusive_with(len: usize, pages: Pages) -> Result<Region> {
        if len > Self::MAX_LEN {
            return Err(Error::new(Kind::Usage(format!(
                "a shared-memory block of {len} bytes is over the cap of {} bytes",
                Self::MAX_LEN
            ))));
        }
        let pages = match pages {
            Pages::Huge => sys::ShmPages::HugeIfFree,
            Pages::Small => sys::ShmPages::Base,
        };
        sys::Shm::create_of(len, pages)
            .map(Region)
            .map_err(|e| Error::io("cannot create a shared-memory block", e))
    }

    /// A new writable, shared block holding `value`, one atomic.
    pub(crate) fn with_atomic<A: sys::ShmAtomic>(value: A) -> Result<Region> {
        sys::Shm::create_with(value)
            .map(Region)
            .map_err(|e| Error::io("cannot create a shared-memory block", e))
    }

    /// The length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// The first byte: page-aligned, valid for [`len`](Region::len) bytes
    /// (and at least one), writable unless the region is frozen. Unless
    /// the region is exclusive, other processes may read and (unless
    /// frozen) write the same bytes at any time.
    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.0.as_ptr()
    }

    /// The block's handle, to hand to another process by other means
    /// than the wire form (a queue's lane); `None` while it is exclusive.
    pub(crate) fn handle(&self) -> Option<sys::BorrowedRaw<'_>> {
        self.0.handle_to_pass()
    }

    /// A frozen block received by other means than the wire form (a
    /// queue's lane): checks `handle` (a frozen block of `len` bytes,
    /// see `sys::shm_map`; `InvalidData` if it is not one) and maps it
    /// read-only.
    pub(crate) fn open_frozen(handle: sys::OwnedRaw, len: usize) -> std::io::Result<Region> {
        if len > Self::MAX_LEN {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("a shared-memory block of {len} bytes is over the cap"),
            ));
        }
        sys::Shm::open(handle, len, ShmAccess::ReadOnly).map(Region)
    }

    /// Frozen: read-only here and, for good, in every process.
    pub(crate) fn is_frozen(&self) -> bool {
        self.0.access() == ShmAccess::ReadOnly
    }

    /// The bytes, if no process can write them while borrowed: the region
    /// is frozen, or exclusive.
    pub(crate) fn bytes(&self) -> Option<&[u8]> {
        self.0.bytes()
    }

    /// The bytes, writable, if the region is exclusive.
    pub(crate) fn bytes_mut(&mut self) -> Option<&mut [u8]> {
        self.0.bytes_mut()
    }

    /// The region as atomics, if it is writable and shared
    /// ([`new`](Region::new), or received writable).
    pub(crate) fn atomics<A: sys::ShmAtomic>(&self) -> Option<&[A]> {
        self.0.atomics()
    }

    /// Makes an exclusive region read-only for good, in every process:
    /// drops the writable mapping, seals the block (Linux) or keeps only a
    /// read-only handle (Windows), and maps it read-only. On error the
    /// block is gone.
    pub(crate) fn freeze(self) -> Result<Region> {
        self.0
            .freeze()
            .map(Region)
            .map_err(|e| Error::io("cannot freeze a shared-memory block", e))
    }

    /// Reads a region written by its `Serialize` impl, frozen or writable
    /// as `frozen` says: checks the wire form, takes the handle, checks
    /// and maps the block.
    pub(crate) fn deserialize_as<'de, D: Deserializer<'de>>(
        d: D,
        frozen: bool,
    ) -> std::result::Result<Region, D::Error> {
        let w = RegionWire::deserialize(d)?;
        let len = w.check(frozen).map_err(encode::decode_error)?;
        let handle = take_passed_handle(w.token).map_err(|e| {
            encode::decode_error(format!("cannot take a shared-memory block's handle: {e}"))
        })?;
        let access = match frozen {
            true => ShmAccess::ReadOnly,
            false => ShmAccess::ReadWrite,
        };
        sys::Shm::open(handle, len, access)
            .map(Region)
            .map_err(|e| encode::decode_error(format!("a shared-memory block refused: {e}")))
    }
}

impl Serialize for Region {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let handle = self.0.handle_to_pass().ok_or_else(|| {
            encode::handle_error(Error::new(Kind::Usage(
                "a shared-memory block that is still exclusive can't be sent".into(),
            )))
        })?;
        let token = duplicate_for_child(handle).map_err(encode::handle_error)?;
        RegionWire {
            token,
            len: self.len() as u64,
            frozen: self.is_frozen(),
        }
        .serialize(s)
    }
}

/// Test hooks (feature `test-hooks`): forged blocks, and a copy of a
/// block's handle to forge them with.
#[cfg(feature = "test-hooks")]
pub(crate) mod hooks {
    use std::marker::PhantomData;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::{Region, RegionWire};
    use crate::codec::handles::duplicate_for_child;
    use crate::encode;
    use crate::sys;

    /// Written as a shared block's wire form with any handle (or only a
    /// token), any length and any frozen flag; read as a `T`. A worker
    /// whose entry takes a `ForgedBlock<Frozen<u64>>` decodes the forgery
    /// with `Frozen<u64>`'s decoder.
    #[derive(Debug)]
    pub struct ForgedBlock<T> {
        handle: Option<sys::OwnedRaw>,
        token: u64,
        len: u64,
        frozen: bool,
        received: Option<T>,
        _t: PhantomData<T>,
    }

    impl<T> ForgedBlock<T> {
        /// A wire form that passes `handle` and says `len` bytes, `frozen`.
        pub fn new(handle: sys::OwnedRaw, len: u64, frozen: bool) -> Self {
            ForgedBlock {
                handle: Some(handle),
                token: 0,
                len,
                frozen,
                received: None,
                _t: PhantomData,
            }
        }

        /// A wire form with `token` and no handle passed.
        pub fn token_only(token: u64, len: u64, frozen: bool) -> Self {
            ForgedBlock {
                handle: None,
                token,
                len,
                frozen,
                received: None,
                _t: PhantomData,
            }
        }

        /// In the worker: what was decoded.
        pub fn into_received(self) -> Option<T> {
            self.received
        }
    }

    impl<T> Serialize for ForgedBlock<T> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let token = match &self.handle {
                Some(h) => duplicate_for_child(sys::borrow(h)).map_err(encode::handle_error)?,
                None => self.token,
            };
            RegionWire {
                token,
                len: self.len,
                frozen: self.frozen,
            }
            .serialize(s)
        }
    }

    impl<'de, T: Deserialize<'de>> Deserialize<'de> for ForgedBlock<T> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            Ok(ForgedBlock {
                handle: None,
                token: 0,
                len: 0,
                frozen: false,
                received: Some(T::deserialize(d)?),
                _t: PhantomData,
            })
        }
    }

    /// A copy of `region`'s handle (for a `ForgedBlock`), if it can be
    /// passed (not exclusive).
    pub(crate) fn handle_of(region: &Region) -> std::io::Result<sys::OwnedRaw> {
        let h = region.0.handle_to_pass().ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "an exclusive block")
        })?;
        h.try_clone_to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[test]
    fn an_exclusive_region_is_zeroed_writable_and_page_aligned() {
        let mut r = Region::new_exclusive(10_000).unwrap();
        assert_eq!(r.len(), 10_000);
        assert!(!r.is_frozen());
        assert_eq!(r.as_ptr() as usize % 4096, 0);
        assert!(r.bytes().unwrap().iter().all(|&b| b == 0));
        r.bytes_mut().unwrap()[9_999] = 7;
        assert!(r.atomics::<AtomicU64>().is_none(), "exclusive: no atomics");
        let f = r.freeze().unwrap();
        assert!(f.is_frozen());
        assert_eq!(f.bytes().unwrap()[9_999], 7);
        assert_eq!(f.bytes().unwrap().len(), 10_000);
        assert!(f.atomics::<AtomicU64>().is_none(), "frozen: no atomics");
    }

    #[test]
    fn a_shared_region_gives_atomics_only() {
        let mut r = Region::new(64, Pages::Huge).unwrap();
        assert!(r.bytes().is_none());
        assert!(r.bytes_mut().is_none());
        let a = r.atomics::<AtomicU64>().unwrap();
        assert_eq!(a.len(), 8);
        a[7].fetch_add(5, Ordering::SeqCst);
        assert_eq!(a[7].load(Ordering::SeqCst), 5);
        let e = r.freeze().unwrap_err();
        assert_eq!(e.io_error().unwrap().kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn zero_bytes_is_a_region_too() {
        let r = Region::new_exclusive(0).unwrap();
        assert_eq!(r.len(), 0);
        let f = r.freeze().unwrap();
        assert_eq!(f.bytes(), Some(&[][..]));
    }

    #[test]
    fn over_the_cap_is_a_usage_error() {
        let e = Region::new(Region::MAX_LEN + 1, Pages::Huge).unwrap_err();
        assert!(e.is_usage(), "{e}");
    }

    #[test]
    fn the_wire_form_is_checked_before_the_handle_is_taken() {
        let w = |len: u64, frozen| RegionWire {
            token: 0,
            len,
            frozen,
        };
        assert_eq!(w(8, true).check(true), Ok(8));
        assert!(w(Region::MAX_LEN as u64 + 1, true).check(true).is_err());
        assert!(w(u64::MAX, false).check(false).is_err());
        assert!(w(8, false).check(true).unwrap_err().contains("writable"));
        assert!(w(8, true).check(false).unwrap_err().contains("frozen"));
    }

    #[test]
    fn a_region_is_sent_only_while_spawning() {
        let r = Region::new(8, Pages::Huge).unwrap();
        let e = crate::encode::to_vec(&r).unwrap_err();
        assert!(e.to_string().contains("no child is being spawned"), "{e}");
        let x = Region::new_exclusive(8).unwrap();
        let e = crate::encode::to_vec(&x).unwrap_err();
        assert!(e.to_string().contains("exclusive"), "{e}");
    }
}
