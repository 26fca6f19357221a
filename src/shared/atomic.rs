//! [`Shared`]: an atomic, or an array of them, in shared memory.

use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::atomic;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::region::Region;
use super::Pages;
use crate::encode;
use crate::error::{Error, Kind, Result};
use crate::sys::ShmAtomic;

/// The std atomic integer types, which [`Shared`] can hold. Sealed: it
/// can't be implemented outside this crate.
pub trait SharedAtomic: ShmAtomic {}

/// An atomic integer (`AtomicU64`, `AtomicI32`, …) in shared memory: every
/// process holding it sees the same value.
///
/// It dereferences to the atomic, so all of its methods work
/// (`fetch_add`, `compare_exchange`, …), across processes. That is sound
/// because every access to an atomic is atomic, whoever makes it. Clones
/// share the value; it crosses into a child like a
/// [`Connection`](crate::Connection), and the memory is freed when the
/// last process lets go of it.
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
///
/// let hits = multiproc::Shared::new(AtomicU64::new(1))?;
/// hits.fetch_add(2, Ordering::Relaxed);
/// assert_eq!(hits.load(Ordering::Relaxed), 3);
/// # Ok::<(), multiproc::Error>(())
/// ```
///
/// `Shared<[A]>` is an array of them ([`Shared::zeroed`]), dereferencing
/// to `[A]`:
///
/// ```
/// use std::sync::atomic::{AtomicU32, Ordering};
///
/// let slots = multiproc::Shared::<[AtomicU32]>::zeroed(8)?;
/// slots[3].store(7, Ordering::Relaxed);
/// assert_eq!(slots.iter().map(|s| s.load(Ordering::Relaxed)).sum::<u32>(), 7);
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct Shared<A: ?Sized> {
    region: Arc<Region>,
    _a: PhantomData<A>,
}

impl<A: ?Sized> Clone for Shared<A> {
    fn clone(&self) -> Self {
        Shared {
            region: Arc::clone(&self.region),
            _a: PhantomData,
        }
    }
}

macro_rules! shared_atomic {
    ($($t:ident),*) => {$(
        impl SharedAtomic for atomic::$t {}
    )*};
}
shared_atomic!(AtomicU8, AtomicU16, AtomicU32, AtomicU64, AtomicUsize);
shared_atomic!(AtomicI8, AtomicI16, AtomicI32, AtomicI64, AtomicIsize);

impl<A: SharedAtomic> Shared<A> {
    /// A new shared atomic holding `value`'s value; an I/O error if the OS
    /// can't make the block.
    pub fn new(value: A) -> Result<Self> {
        Ok(Shared {
            region: Arc::new(Region::with_atomic(value)?),
            _a: PhantomData,
        })
    }
}

impl<A: SharedAtomic> Shared<[A]> {
    /// `len` shared atomics, all zero. A [usage error](crate::Error::is_usage)
    /// over 1 TiB; an I/O error if the OS can't make the block. Of huge
    /// pages on Linux where the system can give them, as
    /// [`SharedMut::zeroed`](crate::SharedMut::zeroed);
    /// [`zeroed_with_pages`](Shared::zeroed_with_pages) chooses.
    pub fn zeroed(len: usize) -> Result<Self> {
        Self::zeroed_with_pages(len, Pages::Huge)
    }

    /// `len` shared atomics, all zero, of the pages `pages` asks for:
    /// [`Pages::Small`] for 4 KiB pages only, taken as they are first
    /// touched; [`Pages::Huge`] is what [`zeroed`](Shared::zeroed) does.
    pub fn zeroed_with_pages(len: usize, pages: Pages) -> Result<Self> {
        let bytes = len
            .checked_mul(std::mem::size_of::<A>())
            .filter(|&b| b <= Region::MAX_LEN)
            .ok_or_else(|| {
                Error::new(Kind::Usage(format!(
                    "{len} shared atomics are over the cap of {} bytes",
                    Region::MAX_LEN
                )))
            })?;
        Ok(Shared {
            region: Arc::new(Region::new(bytes, pages)?),
            _a: PhantomData,
        })
    }
}

impl<A: SharedAtomic> Deref for Shared<[A]> {
    type Target = [A];
    fn deref(&self) -> &[A] {
        // Writable and shared, a whole number of `A`s (checked on receipt).
        self.region
            .atomics::<A>()
            .expect("a Shared block is writable and shared")
    }
}

impl<A: SharedAtomic + fmt::Debug> fmt::Debug for Shared<[A]> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Shared").field(&&**self).finish()
    }
}

impl<A: SharedAtomic> Serialize for Shared<[A]> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.region.serialize(s)
    }
}

impl<'de, A: SharedAtomic> Deserialize<'de> for Shared<[A]> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let region = Region::deserialize_as(d, false)?;
        let size = std::mem::size_of::<A>();
        if region.len() % size != 0 || region.atomics::<A>().is_none() {
            return Err(encode::decode_error(format!(
                "a shared block of {} bytes is not a whole number of `{}` ({size} bytes each)",
                region.len(),
                std::any::type_name::<A>()
            )));
        }
        Ok(Shared {
            region: Arc::new(region),
            _a: PhantomData,
        })
    }
}

impl<A: SharedAtomic> Deref for Shared<A> {
    type Target = A;
    fn deref(&self) -> &A {
        // Writable and shared, of exactly one `A` (checked on receipt).
        &self
            .region
            .atomics::<A>()
            .expect("a Shared block is writable and shared")[0]
    }
}

impl<A: SharedAtomic + fmt::Debug> fmt::Debug for Shared<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Shared").field(&**self).finish()
    }
}

impl<A: SharedAtomic> Serialize for Shared<A> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.region.serialize(s)
    }
}

impl<'de, A: SharedAtomic> Deserialize<'de> for Shared<A> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let region = Region::deserialize_as(d, false)?;
        let want = std::mem::size_of::<A>();
        if region.len() != want || region.atomics::<A>().is_none() {
            return Err(encode::decode_error(format!(
                "a shared block of {} bytes arrived for a `{}` ({want} bytes)",
                region.len(),
                std::any::type_name::<A>()
            )));
        }
        Ok(Shared {
            region: Arc::new(region),
            _a: PhantomData,
        })
    }
}
