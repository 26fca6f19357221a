//! [`Guarded`]: a writable shared-memory block ([`Shm`]) that is reached
//! only while holding a process-shared mutex ([`SysMutex`]); the one place
//! that hands out `&mut [u8]` to memory other processes write too.
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

use std::io;
use std::marker::PhantomData;
use std::time::Instant;

use super::{BorrowedRaw, LockStatus, OwnedRaw, Shm, ShmAccess, SysMutex};

/// A shared block and the mutex that guards it (see the module docs).
#[derive(Debug)]
pub(crate) struct Guarded {
    mutex: SysMutex,
    shm: Shm,
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
        })
    }

    /// A new block of `len` bytes that starts with `head` (the rest zero:
    /// pages nobody wrote yet, which the OS commits when they are first
    /// written), and a new mutex. For large blocks whose contents start
    /// small (a queue's ring).
    pub(crate) fn with_head(len: usize, head: &[u8]) -> io::Result<Guarded> {
        let mut shm = Shm::create(len)?;
        shm.bytes_mut()
            .ok_or_else(|| io::Error::other("a new shared-memory block is not exclusive"))?
            .get_mut(..head.len())
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, "a head longer than the block")
            })?
            .copy_from_slice(head);
        shm.share();
        Ok(Guarded {
            mutex: SysMutex::new(false)?,
            shm,
        })
    }

    /// A received one: the block must be writable and of `len` bytes
    /// (checked by `Shm::open`).
    pub(crate) fn open(mutex: SysMutex, handle: OwnedRaw, len: usize) -> io::Result<Guarded> {
        let shm = Shm::open(handle, len, ShmAccess::ReadWrite)?;
        Ok(Guarded { mutex, shm })
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

impl GuardedBytes<'_> {
    /// The bytes.
    pub(crate) fn bytes(&self) -> &[u8] {
        let shm = &self.guarded.shm;
        // SAFETY: the block is mapped writable for `len` bytes (at least
        // one) as long as the `Guarded` lives, which `self` borrows; this
        // thread holds the mutex, so no other thread or process touches
        // the bytes while `self` lives (module docs), and `&self` rules
        // out `bytes_mut` meanwhile.
        unsafe { std::slice::from_raw_parts(shm.as_ptr(), shm.len()) }
    }

    /// The bytes, writable.
    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        let shm = &self.guarded.shm;
        // SAFETY: as in `bytes`; `&mut self` rules out any other slice of
        // them meanwhile.
        unsafe { std::slice::from_raw_parts_mut(shm.as_ptr(), shm.len()) }
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
