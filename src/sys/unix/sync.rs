//! Cross-process synchronization objects, each in a small anonymous
//! shared-memory block of its own (`shm_create`), passed as that block's
//! fd.
//!
//! - [`SysMutex`] is a process-shared pthread mutex
//!   (`PTHREAD_PROCESS_SHARED`), error-checking or recursive. On Linux it
//!   is also robust (`PTHREAD_MUTEX_ROBUST`): when its holder dies (its
//!   process is killed, or its thread ends) the kernel walks the thread's
//!   robust list, marks the futex word `FUTEX_OWNER_DIED` and wakes a
//!   waiter, whose `lock` returns `EOWNERDEAD` (set_robust_list(2),
//!   pthread_mutexattr_setrobust(3)). We make the mutex usable again at
//!   once (`pthread_mutex_consistent`) and keep the news in a word of our
//!   own next to it, the *dirty* word, which every later `lock` reads
//!   until [`SysMutex::mark_consistent`] clears it: so the death is
//!   reported to each acquirer until someone repairs the data, not only to
//!   the first (which pthread would do, and then fail every later `lock`
//!   with `ENOTRECOVERABLE` if that first one released it unrepaired).
//!   Why pthread rather than a futex of our own: a robust futex must be
//!   on the thread's robust list, and that list belongs to the C library
//!   (glibc and musl register it for every thread; the kernel keeps one
//!   head per thread).
//! - [`SysSemaphore`] and [`SysEvent`] are a 32-bit word and a count of
//!   sleepers; Linux sleeps on the word with `FUTEX_WAIT` (shared, not
//!   `FUTEX_PRIVATE_FLAG`, since other processes map the same page; the
//!   kernel keys the futex by the page, futex(2)) and wakes with
//!   `FUTEX_WAKE` only when someone sleeps. A semaphore's `acquire` looks
//!   at the count for a few microseconds before it sleeps.
//! - [`SysWaker`] sleeps on a counter in a block of the caller's (a
//!   `Condition`'s state) until it moves on: `FUTEX_WAIT` on the counter,
//!   and a bump wakes every sleeper with `FUTEX_WAKE`. It has no block
//!   and no fd of its own.
//! - Other Unixes (macOS) have neither robust mutexes nor futexes: the
//!   mutex is process-shared but not robust (a dead holder's lock stays
//!   held), and every wait polls, sleeping up to a millisecond between
//!   looks, with `pthread_mutex_trylock` for timed locks.
//!
//! Every block starts with a magic number and the object's kind, written
//! last when it is made and checked when a received block is opened, so a
//! block of another kind (or any other memfd) is refused; its size is
//! checked exactly by `shm_map`.
//!
//! This file has the blocks (their header, each object's layout,
//! [`Block`]: made, published, opened and checked); `sync/mutex.rs` the
//! pthread mutex, `sync/futex.rs` the objects over a futex word (waiting
//! on a word, the semaphore, the event and the waker).

use std::cell::UnsafeCell;
use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};

use super::{shm_create, shm_map, ShmView};
use crate::sys::{ShmAccess, ShmPages};

mod futex;
mod mutex;

pub(crate) use futex::{SysEvent, SysSemaphore, SysWaker};
pub(crate) use mutex::SysMutex;

/// "MPSY": a block made by this module.
const MAGIC: u32 = 0x4d50_5359;
const KIND_MUTEX: u32 = 1;
const KIND_RMUTEX: u32 = 2;
const KIND_SEMAPHORE: u32 = 3;
const KIND_EVENT: u32 = 4;

/// What each block starts with.
#[repr(C)]
struct Header {
    magic: AtomicU32,
    kind: AtomicU32,
}

/// The contents of a block: every field is an atomic or an `UnsafeCell`,
/// and any bit pattern is a valid value of each, so a shared reference to
/// it is sound while other processes read and write the same bytes.
///
/// # Safety
///
/// Only for `repr(C)` types with a [`Header`] first whose fields are all
/// atomics or `UnsafeCell`s of plain C data, valid for any bit pattern.
unsafe trait Layout {
    fn header(&self) -> &Header;
}

#[repr(C)]
struct MutexLayout {
    head: Header,
    /// 1 while a death of a holder has not been repaired.
    dirty: AtomicU32,
    /// Unused (keeps the mutex 8-aligned); atomic like every other field.
    _pad: AtomicU32,
    mutex: UnsafeCell<libc::pthread_mutex_t>,
}

// SAFETY: `repr(C)`, the header first; atomics and an `UnsafeCell` of a
// C struct of integers.
unsafe impl Layout for MutexLayout {
    fn header(&self) -> &Header {
        &self.head
    }
}

#[repr(C)]
struct SemaphoreLayout {
    head: Header,
    count: AtomicU32,
    sleepers: AtomicU32,
    max: AtomicU32,
}

// SAFETY: `repr(C)`, the header first, atomics only.
unsafe impl Layout for SemaphoreLayout {
    fn header(&self) -> &Header {
        &self.head
    }
}

#[repr(C)]
struct EventLayout {
    head: Header,
    flag: AtomicU32,
    sleepers: AtomicU32,
}

// SAFETY: `repr(C)`, the header first, atomics only.
unsafe impl Layout for EventLayout {
    fn header(&self) -> &Header {
        &self.head
    }
}

/// A block holding one `L`, mapped here. Fields drop in order: the
/// mapping before the fd.
///
/// `Send + Sync` whatever `L` is (`PhantomData<fn() -> L>`): `L` lives in
/// shared memory that other processes use at the same time anyway, and
/// is only reached through atomics and the thread-safe pthread calls.
struct Block<L> {
    view: ShmView,
    fd: OwnedFd,
    _layout: PhantomData<fn() -> L>,
}

impl<L> std::fmt::Debug for Block<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Block")
            .field("fd", &self.fd)
            .finish_non_exhaustive()
    }
}

impl<L: Layout> Block<L> {
    /// A new zeroed block; its header is written by [`Block::publish`].
    fn create() -> io::Result<Self> {
        let len = std::mem::size_of::<L>();
        let fd = shm_create(len, ShmPages::Base)?;
        let view = shm_map(fd.as_fd(), len, ShmAccess::ReadWrite)?;
        Ok(Block {
            view,
            fd,
            _layout: PhantomData,
        })
    }

    /// Writes the header: the block is ready.
    fn publish(self, kind: u32) -> Self {
        self.get().header().kind.store(kind, Ordering::Relaxed);
        self.get().header().magic.store(MAGIC, Ordering::Release);
        self
    }

    /// A received block: exactly `size_of::<L>()` bytes (`shm_map`
    /// checks), with our magic number and `kind`.
    fn open(mut handles: Vec<OwnedFd>, kind: u32) -> io::Result<Self> {
        let fd = match (handles.pop(), handles.is_empty()) {
            (Some(fd), true) => fd,
            _ => return Err(invalid("a synchronization object has exactly one handle")),
        };
        let view = shm_map(fd.as_fd(), std::mem::size_of::<L>(), ShmAccess::ReadWrite)?;
        let block = Block::<L> {
            view,
            fd,
            _layout: PhantomData,
        };
        let h = block.get().header();
        if h.magic.load(Ordering::Acquire) != MAGIC {
            return Err(invalid("the block is not a synchronization object"));
        }
        let got = h.kind.load(Ordering::Relaxed);
        if got != kind {
            return Err(invalid(&format!(
                "the block holds a synchronization object of kind {got}, not {kind}"
            )));
        }
        Ok(block)
    }

    fn get(&self) -> &L {
        let p = self.view.as_ptr().cast::<L>();
        debug_assert!(p.is_aligned());
        // SAFETY: the view maps `size_of::<L>()` bytes (checked by
        // `shm_map`), page-aligned, writable, for as long as `self` lives;
        // `L: Layout` is made of atomics and `UnsafeCell`s valid for any
        // bit pattern, so other processes writing it at the same time
        // break no reference rule.
        unsafe { &*p }
    }
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

fn errno(rc: libc::c_int) -> io::Error {
    io::Error::from_raw_os_error(rc)
}

/// `SysMutex::lock`'s and `SysSemaphore::acquire`'s tries before they
/// block (the pauses between them double: 1, 2, .., 64 spin-loop hints).
const SPIN_ROUNDS: u32 = 7;

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::sys::LockStatus;

    #[test]
    fn a_block_of_another_kind_is_refused() {
        let e = SysEvent::new().unwrap();
        let fd = e.block.fd.try_clone().unwrap();
        // Same size as an event, another kind: refused by kind.
        let err = SysSemaphore::from_parts(vec![fd], 0).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
        // Another size: refused by shm_map.
        let fd = e.block.fd.try_clone().unwrap();
        assert!(SysMutex::from_parts(vec![fd], 0, false).is_err());
        assert!(SysEvent::from_parts(vec![], 0).is_err());
    }

    #[test]
    fn a_relock_by_the_holder_is_refused_not_a_deadlock() {
        let m = SysMutex::new(false).unwrap();
        assert_eq!(m.lock(None).unwrap(), LockStatus::Acquired);
        assert_eq!(m.lock(None).unwrap(), LockStatus::WouldDeadlock);
        m.unlock().unwrap();
        let r = SysMutex::new(true).unwrap();
        assert_eq!(r.lock(None).unwrap(), LockStatus::Acquired);
        assert_eq!(r.try_lock().unwrap(), LockStatus::Acquired);
        r.unlock().unwrap();
        r.unlock().unwrap();
    }

    #[test]
    fn a_bump_wakes_a_sleeper_and_a_moved_counter_is_no_sleep() {
        let w = std::sync::Arc::new(SysWaker::new().unwrap());
        let word = std::sync::Arc::new(AtomicU32::new(0));
        // Moved on already: returns at once, whatever the deadline.
        let moved = AtomicU32::new(1);
        w.wait(&moved, 0, None).unwrap();
        let (w2, word2) = (std::sync::Arc::clone(&w), std::sync::Arc::clone(&word));
        let t = std::thread::spawn(move || {
            // Returns early at times: look again, as callers do.
            while word2.load(Ordering::SeqCst) == 0 {
                w2.wait(&word2, 0, None).unwrap();
            }
        });
        w.bump(&word).unwrap();
        t.join().unwrap();
        assert_eq!(word.load(Ordering::SeqCst), 1);
        // A deadline that passed: returns.
        w.wait(&word, 1, Some(Instant::now())).unwrap();
    }

    #[test]
    fn a_waker_of_other_handles_is_refused() {
        let e = SysEvent::new().unwrap();
        let fd = e.block.fd.try_clone().unwrap();
        assert!(SysWaker::from_parts(vec![fd], 0).is_err());
    }
}
