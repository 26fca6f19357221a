//! [`Shm`]: a block of shared memory with one mapping of it, over the
//! platform calls (`shm_create`, `shm_map`, `shm_freeze`, [`ShmView`]),
//! and the only place that turns its pointer into references. It tracks
//! what makes each one sound:
//!
//! - **exclusive**: made here by [`Shm::create`], until [`Shm::share`]
//!   (which takes `&mut self`, so no borrow of the bytes outlives it);
//!   its handle is not given out before. No other process can have it, so
//!   `&[u8]` / `&mut [u8]` follow Rust's borrow rules through `&self` /
//!   `&mut self`.
//! - **frozen** ([`ShmAccess::ReadOnly`]): read-only here, and sealed
//!   (Linux) or behind read-only handles (Windows), so no process writes
//!   it: `&[u8]` is sound. macOS can't seal; there it rests on every
//!   process mapping a frozen block read-only, which this crate does.
//! - **writable and shared**: any process may write at any time, so only
//!   atomics ([`Shm::atomics`]) and raw pointers are handed out.

use std::io;
use std::sync::atomic;

use super::{shm_create, shm_freeze, shm_map, OwnedRaw, ShmAccess, ShmPages, ShmView};

/// A mapped block of shared memory (see the module docs).
///
/// Fields drop in order: the mapping goes before the handle.
#[derive(Debug)]
pub(crate) struct Shm {
    view: ShmView,
    handle: OwnedRaw,
    len: usize,
    access: ShmAccess,
    exclusive: bool,
}

/// The std atomic types, which may be placed in writable shared memory:
/// every access to them is atomic, so another process writing them at the
/// same time is no data race.
///
/// # Safety
///
/// Only for types whose every operation through `&self` is an atomic
/// access to their own bytes, which are valid for any bit pattern
/// (zero included), with an alignment of at most a page.
pub unsafe trait ShmAtomic: Sync + Sized {}

macro_rules! shm_atomic {
    ($($t:ident),*) => {$(
        // SAFETY: a std atomic type: every access through `&self` is
        // atomic; any bit pattern is a valid integer; aligned to its size.
        unsafe impl ShmAtomic for atomic::$t {}
    )*};
}
shm_atomic!(AtomicU8, AtomicU16, AtomicU32, AtomicU64, AtomicUsize);
shm_atomic!(AtomicI8, AtomicI16, AtomicI32, AtomicI64, AtomicIsize);

impl Shm {
    /// A new zeroed, writable, exclusive block of `len` bytes (0 allowed:
    /// the block has one byte then), of base pages (the crate's own state).
    pub(crate) fn create(len: usize) -> io::Result<Shm> {
        Self::create_of(len, ShmPages::Base)
    }

    /// The same, of the pages `pages` allows (see `ShmPages`): huge ones,
    /// where the system can give them, for blocks of the user's data,
    /// which other processes map whole.
    pub(crate) fn create_of(len: usize, pages: ShmPages) -> io::Result<Shm> {
        let handle = shm_create(len.max(1), pages)?;
        let mut shm = Self::map(handle, len, ShmAccess::ReadWrite)?;
        shm.exclusive = true;
        Ok(shm)
    }

    /// A new writable, shared block holding `value` (and nothing else).
    pub(crate) fn create_with<A: ShmAtomic>(value: A) -> io::Result<Shm> {
        let mut shm = Self::create(std::mem::size_of::<A>())?;
        let p = shm.as_ptr().cast::<A>();
        if !p.is_aligned() {
            return Err(io::Error::other(
                "a shared-memory block is not page-aligned",
            ));
        }
        // SAFETY: the block is exclusive (nobody else reads or writes it),
        // writable, at least `size_of::<A>()` bytes (at least one byte for
        // a zero-sized `A`) and aligned for `A` (checked); a write of a
        // whole `A` drops nothing (the bytes were zeros, not an `A` that
        // needs dropping; atomics have no drop glue anyway).
        unsafe { p.write(value) };
        shm.share();
        Ok(shm)
    }

    /// A received block: checks `handle` (see `shm_map`) and maps it.
    pub(crate) fn open(handle: OwnedRaw, len: usize, access: ShmAccess) -> io::Result<Shm> {
        Self::map(handle, len, access)
    }

    fn map(handle: OwnedRaw, len: usize, access: ShmAccess) -> io::Result<Shm> {
        let view = shm_map(super::borrow(&handle), len.max(1), access)?;
        Ok(Shm {
            view,
            handle,
            len,
            access,
            exclusive: false,
        })
    }

    /// Makes an exclusive block read-only for good (see the module docs):
    /// drops the writable mapping, seals the block (Linux) or keeps only
    /// a read-only handle (Windows), and maps it read-only. On error the
    /// block is gone; a block that is not exclusive is refused.
    pub(crate) fn freeze(self) -> io::Result<Shm> {
        if !self.exclusive {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "only a block that never left this process can be frozen",
            ));
        }
        let Shm {
            view, handle, len, ..
        } = self;
        drop(view);
        let handle = shm_freeze(handle)?;
        Self::map(handle, len, ShmAccess::ReadOnly)
    }

    /// The length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// How it is mapped.
    pub(crate) fn access(&self) -> ShmAccess {
        self.access
    }

    /// The first byte: page-aligned, valid for `len` bytes (and at least
    /// one), writable only if the block is not frozen.
    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.view.as_ptr()
    }

    /// Ends exclusivity for good: from now on the handle can be passed to
    /// other processes, and the bytes are no longer handed out as slices
    /// (unless the block is frozen).
    pub(crate) fn share(&mut self) {
        self.exclusive = false;
    }

    /// The handle, to pass to another process; `None` while the block is
    /// exclusive ([`share`](Shm::share) it first).
    pub(crate) fn handle_to_pass(&self) -> Option<super::BorrowedRaw<'_>> {
        (!self.exclusive).then(|| super::borrow(&self.handle))
    }

    /// The bytes, if no process can write them while the borrow lasts: the
    /// block is frozen, or exclusive.
    pub(crate) fn bytes(&self) -> Option<&[u8]> {
        let readable = self.access == ShmAccess::ReadOnly || self.exclusive;
        // SAFETY: the view maps at least `len` bytes (at least one) and
        // lives as long as `self`; frozen, nothing writes them (module
        // docs); exclusive, only this process has them, `atomics` refuses
        // such a block, and `&self` rules out `bytes_mut` and `share`
        // while the slice lives.
        readable.then(|| unsafe { std::slice::from_raw_parts(self.as_ptr(), self.len) })
    }

    /// The bytes, writable, if the block is exclusive (and so writable).
    pub(crate) fn bytes_mut(&mut self) -> Option<&mut [u8]> {
        let exclusive = self.exclusive;
        // SAFETY: the view maps at least `len` bytes, writable, and lives
        // as long as `self`; exclusive, no other process has the block and
        // `&mut self` rules out any other reference here.
        exclusive.then(|| unsafe { std::slice::from_raw_parts_mut(self.as_ptr(), self.len) })
    }

    /// The block as atomics (`len / size_of::<A>()` of them), if it is
    /// writable and shared (not exclusive: `bytes` could alias it there;
    /// not frozen: an atomic write to a read-only mapping faults).
    pub(crate) fn atomics<A: ShmAtomic>(&self) -> Option<&[A]> {
        if self.access != ShmAccess::ReadWrite
            || self.exclusive
            || !self.as_ptr().cast::<A>().is_aligned()
        {
            return None;
        }
        let n = self.len / std::mem::size_of::<A>();
        // SAFETY: the view is writable, maps at least `n * size_of::<A>()`
        // bytes, is aligned for `A` (checked) and lives as long as `self`;
        // every access through `&A` is atomic (`ShmAtomic`), so writes by
        // other processes or through other `&A` here race with nothing,
        // and any bit pattern is a valid `A`. No `&[u8]` or `&mut [u8]`
        // of a shared, writable block exists (`bytes`, `bytes_mut`).
        Some(unsafe { std::slice::from_raw_parts(self.as_ptr().cast::<A>(), n) })
    }
}
