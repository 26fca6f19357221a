//! [`SysMutex`]: a process-shared pthread mutex in a block of its own,
//! robust on Linux, with the dirty word that reports a dead holder to
//! every acquirer until the data is repaired (the module docs of
//! `sys/unix/sync.rs`); its lock spins a little, then blocks in slices.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::{errno, Block, MutexLayout, KIND_MUTEX, KIND_RMUTEX, SPIN_ROUNDS};
use crate::deadline;
use crate::sys::LockStatus;

/// The longest a blocked `SysMutex::lock` sleeps before it looks again
/// (Linux; see there).
#[cfg(any(target_os = "linux", target_os = "android"))]
const LOCK_SLICE: std::time::Duration = std::time::Duration::from_millis(100);

/// A process-shared mutex (robust on Linux); see the module docs.
#[derive(Debug)]
pub(crate) struct SysMutex {
    block: Block<MutexLayout>,
}

/// A `pthread_mutexattr_t`, destroyed on drop.
struct MutexAttr(MaybeUninit<libc::pthread_mutexattr_t>);

impl MutexAttr {
    fn new() -> io::Result<MutexAttr> {
        let mut a = MutexAttr(MaybeUninit::uninit());
        // SAFETY: initializes the attribute object in place.
        let rc = unsafe { libc::pthread_mutexattr_init(a.0.as_mut_ptr()) };
        if rc != 0 {
            // Not initialized: nothing to destroy.
            std::mem::forget(a);
            return Err(errno(rc));
        }
        Ok(a)
    }

    fn ptr(&mut self) -> *mut libc::pthread_mutexattr_t {
        self.0.as_mut_ptr()
    }
}

impl Drop for MutexAttr {
    fn drop(&mut self) {
        // SAFETY: initialized by `new`, destroyed once.
        unsafe { libc::pthread_mutexattr_destroy(self.0.as_mut_ptr()) };
    }
}

fn check(rc: libc::c_int) -> io::Result<()> {
    match rc {
        0 => Ok(()),
        e => Err(errno(e)),
    }
}

impl SysMutex {
    /// The number of handles the wire form carries.
    pub(crate) const HANDLES: usize = 1;

    /// A new unlocked mutex; `recursive`: its holder may lock it again.
    pub(crate) fn new(recursive: bool) -> io::Result<SysMutex> {
        let block = Block::<MutexLayout>::create()?;
        let mut attr = MutexAttr::new()?;
        let kind = match recursive {
            true => libc::PTHREAD_MUTEX_RECURSIVE,
            false => libc::PTHREAD_MUTEX_ERRORCHECK,
        };
        // SAFETY: an initialized attribute object.
        check(unsafe { libc::pthread_mutexattr_settype(attr.ptr(), kind) })?;
        // SAFETY: as above.
        check(unsafe {
            libc::pthread_mutexattr_setpshared(attr.ptr(), libc::PTHREAD_PROCESS_SHARED)
        })?;
        #[cfg(any(target_os = "linux", target_os = "android"))]
        // SAFETY: as above.
        check(unsafe {
            libc::pthread_mutexattr_setrobust(attr.ptr(), libc::PTHREAD_MUTEX_ROBUST)
        })?;
        // SAFETY: the mutex lies in our new block, which no other process
        // has yet (it is not published), and is not initialized; the
        // attribute object is initialized.
        check(unsafe { libc::pthread_mutex_init(block.get().mutex.get(), attr.ptr()) })?;
        let kind = if recursive { KIND_RMUTEX } else { KIND_MUTEX };
        Ok(SysMutex {
            block: block.publish(kind),
        })
    }

    fn raw(&self) -> *mut libc::pthread_mutex_t {
        self.block.get().mutex.get()
    }

    /// Locks, waiting at most until `deadline` (`None`: forever).
    ///
    /// Tries for a few microseconds (`trylock`, backing off) before it
    /// blocks: glibc's robust mutexes never spin, and a robust mutex that
    /// was once waited on stays marked as having waiters (its next owner
    /// can't know that none are left), so each blocking `lock` costs a
    /// `FUTEX_WAIT` and the next unlocks a `FUTEX_WAKE` each. The
    /// queues' critical sections last a fraction of a microsecond: two
    /// processes on two cores taking turns spent most of their time in
    /// those syscalls.
    ///
    /// On Linux a blocked `lock` sleeps at most [`LOCK_SLICE`] at a time
    /// and then looks again: an unlock wakes one sleeper, and a sleeper
    /// killed after that wakeup but before it took the lock takes the
    /// wakeup with it. The others sleep on while the lock is free, until
    /// a new waiter marks the mutex as waited on and its next unlock
    /// wakes one of them — which waiters that spin and take the lock
    /// with `trylock` never do. (`test_queue`'s chaos test left every
    /// consumer asleep on a free queue lock that way.)
    pub(crate) fn lock(&self, deadline: Option<Instant>) -> io::Result<LockStatus> {
        // (A deadline that passed asks for no waiting at all.)
        if !deadline::passed(deadline) {
            if let Some(rc) = self.spin() {
                return self.status(rc);
            }
        }
        self.status(self.blocking_lock(deadline))
    }

    /// Blocks until locked or `deadline`, in sleeps of at most
    /// [`LOCK_SLICE`] (see [`lock`](SysMutex::lock)).
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn blocking_lock(&self, deadline: Option<Instant>) -> libc::c_int {
        loop {
            let slice = Instant::now() + LOCK_SLICE;
            match deadline {
                Some(d) if d <= slice => return self.timed_lock(d),
                _ => match self.timed_lock(slice) {
                    libc::ETIMEDOUT => continue,
                    rc => return rc,
                },
            }
        }
    }

    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    fn blocking_lock(&self, deadline: Option<Instant>) -> libc::c_int {
        match deadline {
            None => {
                // SAFETY: an initialized process-shared mutex in a block
                // mapped for as long as `self` lives.
                unsafe { libc::pthread_mutex_lock(self.raw()) }
            }
            Some(d) => self.timed_lock(d),
        }
    }

    /// Locks if that needs no waiting.
    pub(crate) fn try_lock(&self) -> io::Result<LockStatus> {
        self.status(self.trylock_rc())
    }

    /// `trylock` a few times with growing pauses (about 130 spin-loop
    /// hints in all, a few microseconds): the lock's result, or `None` if
    /// it is still held.
    fn spin(&self) -> Option<libc::c_int> {
        for round in 0..SPIN_ROUNDS {
            match self.trylock_rc() {
                libc::ETIMEDOUT => {}
                rc => return Some(rc),
            }
            for _ in 0..1u32 << round {
                std::hint::spin_loop();
            }
        }
        None
    }

    fn trylock_rc(&self) -> libc::c_int {
        // SAFETY: an initialized process-shared mutex in a block mapped
        // for as long as `self` lives.
        match unsafe { libc::pthread_mutex_trylock(self.raw()) } {
            // Held, by another thread or (EDEADLK, error-checking) this one.
            libc::EBUSY | libc::EDEADLK => libc::ETIMEDOUT,
            rc => rc,
        }
    }

    /// `pthread_mutex_timedlock` takes a CLOCK_REALTIME deadline: we give
    /// it at most a second at a time, so that a jump of the wall clock
    /// delays us by at most that.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn timed_lock(&self, deadline: Instant) -> libc::c_int {
        use std::time::{Duration, SystemTime, UNIX_EPOCH};
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return self.trylock_rc();
            }
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            let until = now + left.min(Duration::from_secs(1));
            let ts = libc::timespec {
                tv_sec: until.as_secs() as _,
                tv_nsec: until.subsec_nanos() as _,
            };
            // SAFETY: an initialized process-shared mutex in a block
            // mapped for as long as `self` lives; `ts` is a valid timespec.
            match unsafe { libc::pthread_mutex_timedlock(self.raw(), &ts) } {
                libc::ETIMEDOUT => continue,
                rc => return rc,
            }
        }
    }

    /// No timed lock: poll.
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    fn timed_lock(&self, deadline: Instant) -> libc::c_int {
        loop {
            match self.trylock_rc() {
                libc::ETIMEDOUT if !deadline::passed(Some(deadline)) => {
                    let nap = std::time::Duration::from_millis(1);
                    std::thread::sleep(deadline::left(Some(deadline)).map_or(nap, |l| l.min(nap)));
                }
                rc => return rc,
            }
        }
    }

    fn status(&self, rc: libc::c_int) -> io::Result<LockStatus> {
        let dirty = &self.block.get().dirty;
        match rc {
            0 if dirty.load(Ordering::Relaxed) != 0 => Ok(LockStatus::OwnerDied),
            0 => Ok(LockStatus::Acquired),
            libc::ETIMEDOUT => Ok(LockStatus::TimedOut),
            libc::EDEADLK => Ok(LockStatus::WouldDeadlock),
            #[cfg(any(target_os = "linux", target_os = "android"))]
            libc::EOWNERDEAD => {
                // We hold it: make it usable again, remember the death.
                dirty.store(1, Ordering::Relaxed);
                // SAFETY: an initialized process-shared mutex in a block mapped
                // for as long as `self` lives; we are the owner after EOWNERDEAD.
                check(unsafe { libc::pthread_mutex_consistent(self.raw()) })?;
                Ok(LockStatus::OwnerDied)
            }
            e => Err(errno(e)),
        }
    }

    /// Unlocks (the calling thread holds it).
    pub(crate) fn unlock(&self) -> io::Result<()> {
        // SAFETY: an initialized process-shared mutex in a block mapped
        // for as long as `self` lives.
        check(unsafe { libc::pthread_mutex_unlock(self.raw()) })
    }

    /// Clears the news of a dead holder (the calling thread holds it).
    pub(crate) fn mark_consistent(&self) {
        self.block.get().dirty.store(0, Ordering::Relaxed);
    }

    /// Test hook (glibc): sleeps on the held mutex's futex word as a
    /// blocked `pthread_mutex_lock` does (sets `FUTEX_WAITERS`, then
    /// `FUTEX_WAIT`, shared) and returns once a `FUTEX_WAKE` woke it,
    /// *without* taking the lock: what a waiter killed right after its
    /// wakeup leaves behind (see [`lock`](SysMutex::lock)). `Ok(false)`:
    /// the mutex was free, nothing to sleep on.
    #[cfg(feature = "test-hooks")]
    pub(crate) fn swallow_a_wakeup(&self) -> io::Result<bool> {
        #[cfg(all(any(target_os = "linux", target_os = "android"), target_env = "gnu"))]
        {
            use std::sync::atomic::AtomicU32;

            use rustix::io::Errno;
            use rustix::thread::futex;
            const FUTEX_WAITERS: u32 = 0x8000_0000;
            const FUTEX_TID_MASK: u32 = 0x3fff_ffff;
            // SAFETY: glibc's `pthread_mutex_t` starts with its futex
            // word, the int `__data.__lock` (nptl's struct
            // __pthread_mutex_s), 4-aligned in our mapped block; other
            // processes change it only with atomic operations.
            let word = unsafe { &*self.raw().cast::<AtomicU32>() };
            loop {
                let v = word.load(Ordering::Acquire);
                if v & FUTEX_TID_MASK == 0 {
                    return Ok(false);
                }
                let w = v | FUTEX_WAITERS;
                if w != v
                    && word
                        .compare_exchange(v, w, Ordering::AcqRel, Ordering::Acquire)
                        .is_err()
                {
                    continue;
                }
                match futex::wait(word, futex::Flags::empty(), w, None) {
                    Ok(()) => return Ok(true),
                    Err(Errno::AGAIN | Errno::INTR) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
        }
        #[cfg(not(all(any(target_os = "linux", target_os = "android"), target_env = "gnu")))]
        Err(io::Error::from(io::ErrorKind::Unsupported))
    }

    /// The handles of the wire form, and a word of its own (unused here).
    pub(crate) fn parts(&self) -> (Vec<BorrowedFd<'_>>, u64) {
        (vec![self.block.fd.as_fd()], 0)
    }

    /// A received mutex: the block is checked (size, magic, kind).
    pub(crate) fn from_parts(
        handles: Vec<OwnedFd>,
        _: u64,
        recursive: bool,
    ) -> io::Result<SysMutex> {
        let kind = if recursive { KIND_RMUTEX } else { KIND_MUTEX };
        Ok(SysMutex {
            block: Block::open(handles, kind)?,
        })
    }
}
