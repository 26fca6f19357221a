//! [`Guarded`]: a writable shared-memory block ([`Shm`]) that is reached
//! only while holding a process-shared mutex ([`SysMutex`]); the one place
//! that hands out `&mut [u8]` to memory other processes write too. The
//! block may start with an *atomic prefix* (a queue's head word): bytes
//! that are never part of those slices, reached only as atomics, with or
//! without the lock ([`Guarded::atomics`]).
//!
//! Sound because every process reaches the bytes only through a
//! `Guarded` made by this crate, and a `Guarded` only through a
//! [`GuardedBytes`], which exists only while its thread holds the mutex:
//! the mutex is not recursive (a second lock by the holder is
//! `WouldDeadlock`, never a second guard), other threads and processes
//! wait, and locking and unlocking order the accesses (acquire/release,
//! across processes too: the mutex is in memory they all map). What a
//! process outside this crate that maps the block could do is outside
//! Rust's reach, as for any shared memory; the crate's own workers don't.
//! The atomic prefix is outside every `GuardedBytes` slice, and every
//! process of a block uses the same prefix length (its user's constant:
//! the same build, which the bootstrap checks), so no access to it is
//! anything but atomic.

use std::io;
use std::marker::PhantomData;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

use super::{BorrowedRaw, LockStatus, OwnedRaw, Shm, ShmAccess, SysMutex};

/// A shared block and the mutex that guards it (see the module docs).
#[derive(Debug)]
pub(crate) struct Guarded {
    mutex: SysMutex,
    shm: Shm,
    /// The atomic prefix's length: a multiple of 8, less than the block's.
    prefix: usize,
}

/// The bytes of a [`Guarded`], while this thread holds its mutex; unlocks
/// on drop. Not `Send`: the thread that locked unlocks.
#[derive(Debug)]
pub(crate) struct GuardedBytes<'a> {
    guarded: &'a Guarded,
    _not_send: PhantomData<*const ()>,
}

impl Guarded {
    /// A new block holding `init` (its length is the block's), and a new
    /// mutex.
    pub(crate) fn new(init: &[u8]) -> io::Result<Guarded> {
        let mut shm = Shm::create(init.len())?;
        shm.bytes_mut()
            .ok_or_else(|| io::Error::other("a new shared-memory block is not exclusive"))?
            .copy_from_slice(init);
        shm.share();
        Ok(Guarded {
            mutex: SysMutex::new(false)?,
            shm,
            prefix: 0,
        })
    }

    /// A new block of `len` bytes: an atomic prefix of `prefix` bytes
    /// (zeros; a multiple of 8, less than `len`), then the guarded bytes,
    /// which start with `head` (the rest zero: pages nobody wrote yet,
    /// which the OS commits when they are first written); and a new
    /// mutex. For large blocks whose contents start small (a queue's
    /// ring).
    pub(crate) fn with_head(len: usize, prefix: usize, head: &[u8]) -> io::Result<Guarded> {
        check_prefix(len, prefix)?;
        let mut shm = Shm::create(len)?;
        shm.bytes_mut()
            .ok_or_else(|| io::Error::other("a new shared-memory block is not exclusive"))?
            .get_mut(prefix..)
            .and_then(|b| b.get_mut(..head.len()))
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, "a head longer than the block")
            })?
            .copy_from_slice(head);
        shm.share();
        Ok(Guarded {
            mutex: SysMutex::new(false)?,
            shm,
            prefix,
        })
    }

    /// A received one: the block must be writable and of `len` bytes
    /// (checked by `Shm::open`), with an atomic prefix of `prefix` bytes
    /// (the same as its creator's: see the module docs).
    pub(crate) fn open(
        mutex: SysMutex,
        handle: OwnedRaw,
        len: usize,
        prefix: usize,
    ) -> io::Result<Guarded> {
        check_prefix(len, prefix)?;
        let shm = Shm::open(handle, len, ShmAccess::ReadWrite)?;
        Ok(Guarded { mutex, shm, prefix })
    }

    /// The atomic prefix, as `u64` atomics: reached without the lock,
    /// by atomic operations only (module docs).
    pub(crate) fn atomics(&self) -> &[AtomicU64] {
        let p = self.shm.as_ptr().cast::<AtomicU64>();
        debug_assert!(p.is_aligned());
        // SAFETY: the block is mapped writable for `len` bytes, at least
        // `prefix` (`check_prefix`), page-aligned (so aligned for
        // `AtomicU64`), for as long as the `Guarded` lives, which `&self`
        // borrows; the prefix is never part of a `GuardedBytes` slice, and
        // every process of the block reaches it only through atomics
        // (module docs), so other processes writing it at the same time
        // race with nothing; any bit pattern is a valid `AtomicU64`.
        unsafe { std::slice::from_raw_parts(p, self.prefix / 8) }
    }

    /// Locks, waiting at most until `deadline` (`Some(now)`: only if that
    /// needs no waiting); the bytes if locked.
    pub(crate) fn lock(
        &self,
        deadline: Option<Instant>,
        try_only: bool,
    ) -> io::Result<(LockStatus, Option<GuardedBytes<'_>>)> {
        let status = match try_only {
            true => self.mutex.try_lock()?,
            false => self.mutex.lock(deadline)?,
        };
        let bytes =
            matches!(status, LockStatus::Acquired | LockStatus::OwnerDied).then(|| GuardedBytes {
                guarded: self,
                _not_send: PhantomData,
            });
        Ok((status, bytes))
    }

    /// The handles and words of the wire form: the mutex's, then the
    /// block's handle (`None` can't happen: the block is shared from the
    /// start) and length.
    #[allow(clippy::type_complexity)] // the parts, spelled out
    pub(crate) fn parts(&self) -> ((Vec<BorrowedRaw<'_>>, u64), (Vec<BorrowedRaw<'_>>, u64)) {
        let block = self.shm.handle_to_pass().into_iter().collect();
        (self.mutex.parts(), (block, self.shm.len() as u64))
    }
}

/// A prefix of `prefix` bytes fits a block of `len`: none, or a
/// multiple of 8 less than the block (which has guarded bytes after it).
fn check_prefix(len: usize, prefix: usize) -> io::Result<()> {
    match prefix == 0 || (prefix.is_multiple_of(8) && prefix < len) {
        true => Ok(()),
        false => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("an atomic prefix of {prefix} bytes in a block of {len}"),
        )),
    }
}

impl GuardedBytes<'_> {
    /// The bytes (after the atomic prefix).
    pub(crate) fn bytes(&self) -> &[u8] {
        let g = self.guarded;
        // SAFETY: the block is mapped writable for `len` bytes, at least
        // `prefix` (`check_prefix`), as long as the `Guarded` lives, which
        // `self` borrows; this thread holds the mutex, so no other thread
        // or process touches the bytes past the prefix while `self` lives
        // (module docs), and `&self` rules out `bytes_mut` meanwhile.
        unsafe {
            std::slice::from_raw_parts(
                g.shm.as_ptr().wrapping_add(g.prefix),
                g.shm.len() - g.prefix,
            )
        }
    }

    /// The bytes (after the atomic prefix), writable.
    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        let g = self.guarded;
        // SAFETY: as in `bytes`; `&mut self` rules out any other slice of
        // them meanwhile.
        unsafe {
            std::slice::from_raw_parts_mut(
                g.shm.as_ptr().wrapping_add(g.prefix),
                g.shm.len() - g.prefix,
            )
        }
    }

    /// Clears the news of a dead holder (see `SysMutex::mark_consistent`).
    pub(crate) fn mark_consistent(&self) {
        self.guarded.mutex.mark_consistent();
    }
}

impl Drop for GuardedBytes<'_> {
    fn drop(&mut self) {
        // Fails only for a thread that does not hold it, which `self`
        // (not `Send`) rules out.
        let _ = self.guarded.mutex.unlock();
    }
}
