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

use std::cell::UnsafeCell;
use std::io;
use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use super::{shm_create, shm_map, ShmView};
use crate::deadline;
use crate::sys::{LockStatus, ShmAccess, ShmPages};

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

// ---------------------------------------------------------------------------
// Waiting on a word
// ---------------------------------------------------------------------------

/// Sleeps while `word` holds `val`, at most until `deadline`; may return
/// early (woken, interrupted, spuriously): the caller looks again.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn wait_word(word: &AtomicU32, val: u32, deadline: Option<Instant>) {
    use rustix::thread::futex;
    let ts = deadline::left(deadline).map(|d| futex::Timespec {
        tv_sec: d.as_secs().min(i64::MAX as u64) as i64,
        tv_nsec: d.subsec_nanos().into(),
    });
    // EAGAIN (the word changed), ETIMEDOUT and EINTR all mean "look
    // again"; FUTEX_WAIT's timeout is relative, on CLOCK_MONOTONIC.
    let _ = futex::wait(word, futex::Flags::empty(), val, ts.as_ref());
}

/// Wakes up to `n` sleepers of `word`.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn wake_word(word: &AtomicU32, n: u32) {
    use rustix::thread::futex;
    let _ = futex::wake(word, futex::Flags::empty(), n);
}

/// Without futexes: polls, sleeping at most a millisecond.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn wait_word(word: &AtomicU32, val: u32, deadline: Option<Instant>) {
    if word.load(Ordering::Acquire) != val {
        return;
    }
    let nap = std::time::Duration::from_millis(1);
    std::thread::sleep(deadline::left(deadline).map_or(nap, |l| l.min(nap)));
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn wake_word(_: &AtomicU32, _: u32) {}

// ---------------------------------------------------------------------------
// Mutex
// ---------------------------------------------------------------------------

/// `SysMutex::lock`'s and `SysSemaphore::acquire`'s tries before they
/// block (the pauses between them double: 1, 2, .., 64 spin-loop hints).
const SPIN_ROUNDS: u32 = 7;

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

// ---------------------------------------------------------------------------
// Semaphore
// ---------------------------------------------------------------------------

/// A counting semaphore with a maximum count; see the module docs.
#[derive(Debug)]
pub(crate) struct SysSemaphore {
    block: Block<SemaphoreLayout>,
}

impl SysSemaphore {
    /// The number of handles the wire form carries.
    pub(crate) const HANDLES: usize = 1;

    /// A semaphore holding `initial` (at most `max`, checked above).
    pub(crate) fn new(initial: u32, max: u32) -> io::Result<SysSemaphore> {
        let block = Block::<SemaphoreLayout>::create()?;
        block.get().count.store(initial, Ordering::Relaxed);
        block.get().max.store(max, Ordering::Relaxed);
        Ok(SysSemaphore {
            block: block.publish(KIND_SEMAPHORE),
        })
    }

    /// Takes one, waiting at most until `deadline`; false on timeout.
    ///
    /// Before it sleeps it looks at the count a few times with growing
    /// pauses (as [`SysMutex::lock`] spins; a few microseconds in all,
    /// unless the deadline passed already): a release often comes that
    /// soon — a queue's consumer on one core that emptied the ring, its
    /// producer on the other — and a release finds no sleeper then, so
    /// neither side makes a syscall (`FUTEX_WAIT`, and the `FUTEX_WAKE`
    /// the releaser would make, under the queue's lock).
    pub(crate) fn acquire(&self, deadline: Option<Instant>) -> io::Result<bool> {
        let s = self.block.get();
        if !deadline::passed(deadline) {
            for round in 0..SPIN_ROUNDS {
                if Self::take_one(s) {
                    return Ok(true);
                }
                for _ in 0..1u32 << round {
                    std::hint::spin_loop();
                }
            }
        }
        loop {
            if Self::take_one(s) {
                return Ok(true);
            }
            if deadline::passed(deadline) {
                return Ok(false);
            }
            // Announce the sleep before the last look (both SeqCst, paired
            // with `release`'s): either `release` sees us, or we see its count.
            s.sleepers.fetch_add(1, Ordering::SeqCst);
            if s.count.load(Ordering::SeqCst) == 0 {
                wait_word(&s.count, 0, deadline);
            }
            s.sleepers.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Takes one if the count is not 0.
    fn take_one(s: &SemaphoreLayout) -> bool {
        let mut c = s.count.load(Ordering::Acquire);
        while c > 0 {
            match s
                .count
                .compare_exchange_weak(c, c - 1, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(now) => c = now,
            }
        }
        false
    }

    /// Gives back `n`; false (and nothing given) if that would pass the
    /// maximum.
    pub(crate) fn release(&self, n: u32) -> io::Result<bool> {
        let s = self.block.get();
        let max = s.max.load(Ordering::Relaxed);
        let mut c = s.count.load(Ordering::Relaxed);
        loop {
            let Some(new) = c.checked_add(n).filter(|&v| v <= max) else {
                return Ok(false);
            };
            match s
                .count
                .compare_exchange_weak(c, new, Ordering::SeqCst, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(now) => c = now,
            }
        }
        if s.sleepers.load(Ordering::SeqCst) > 0 {
            wake_word(&s.count, n);
        }
        Ok(true)
    }

    /// The count now (others may change it at once).
    pub(crate) fn value(&self) -> Option<u32> {
        Some(self.block.get().count.load(Ordering::Relaxed))
    }

    /// The handles of the wire form, and a word of its own (unused here).
    pub(crate) fn parts(&self) -> (Vec<BorrowedFd<'_>>, u64) {
        (vec![self.block.fd.as_fd()], 0)
    }

    /// A received semaphore: the block is checked (size, magic, kind).
    pub(crate) fn from_parts(handles: Vec<OwnedFd>, _: u64) -> io::Result<SysSemaphore> {
        Ok(SysSemaphore {
            block: Block::open(handles, KIND_SEMAPHORE)?,
        })
    }
}

// ---------------------------------------------------------------------------
// Event
// ---------------------------------------------------------------------------

/// A manual-reset event; see the module docs.
#[derive(Debug)]
pub(crate) struct SysEvent {
    block: Block<EventLayout>,
}

impl SysEvent {
    /// The number of handles the wire form carries.
    pub(crate) const HANDLES: usize = 1;

    /// A new event, not set.
    pub(crate) fn new() -> io::Result<SysEvent> {
        Ok(SysEvent {
            block: Block::<EventLayout>::create()?.publish(KIND_EVENT),
        })
    }

    /// Sets it, waking every waiter.
    pub(crate) fn set(&self) -> io::Result<()> {
        let e = self.block.get();
        e.flag.store(1, Ordering::SeqCst);
        if e.sleepers.load(Ordering::SeqCst) > 0 {
            wake_word(&e.flag, i32::MAX as u32);
        }
        Ok(())
    }

    /// Clears it.
    pub(crate) fn clear(&self) -> io::Result<()> {
        self.block.get().flag.store(0, Ordering::SeqCst);
        Ok(())
    }

    /// Whether it is set.
    pub(crate) fn is_set(&self) -> io::Result<bool> {
        Ok(self.block.get().flag.load(Ordering::Acquire) != 0)
    }

    /// Waits until it is set, at most until `deadline`; whether it is.
    pub(crate) fn wait(&self, deadline: Option<Instant>) -> io::Result<bool> {
        let e = self.block.get();
        loop {
            if e.flag.load(Ordering::Acquire) != 0 {
                return Ok(true);
            }
            if deadline::passed(deadline) {
                return Ok(false);
            }
            e.sleepers.fetch_add(1, Ordering::SeqCst);
            if e.flag.load(Ordering::SeqCst) == 0 {
                wait_word(&e.flag, 0, deadline);
            }
            e.sleepers.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// The handles of the wire form, and a word of its own (unused here).
    pub(crate) fn parts(&self) -> (Vec<BorrowedFd<'_>>, u64) {
        (vec![self.block.fd.as_fd()], 0)
    }

    /// A received event: the block is checked (size, magic, kind).
    pub(crate) fn from_parts(handles: Vec<OwnedFd>, _: u64) -> io::Result<SysEvent> {
        Ok(SysEvent {
            block: Block::open(handles, KIND_EVENT)?,
        })
    }
}

// ---------------------------------------------------------------------------
// Waker
// ---------------------------------------------------------------------------

/// Sleeping until a counter moves on; see the module docs. The counter
/// lives in the caller's block, which must be mapped shared (a `Shm`) for
/// a bump in one process to wake a sleeper in another.
#[derive(Debug)]
pub(crate) struct SysWaker {
    _private: (),
}

impl SysWaker {
    /// The number of handles the wire form carries: none, the futex is
    /// the counter itself.
    pub(crate) const HANDLES: usize = 0;

    /// A new waker.
    pub(crate) fn new() -> io::Result<SysWaker> {
        Ok(SysWaker { _private: () })
    }

    /// Sleeps while `word` holds `seen`, at most until `deadline`; may
    /// return early (woken, interrupted, spuriously): the caller looks
    /// again.
    pub(crate) fn wait(
        &self,
        word: &AtomicU32,
        seen: u32,
        deadline: Option<Instant>,
    ) -> io::Result<()> {
        wait_word(word, seen, deadline);
        Ok(())
    }

    /// Adds one to `word` and wakes every sleeper (callers bump one at a
    /// time, under a lock).
    pub(crate) fn bump(&self, word: &AtomicU32) -> io::Result<()> {
        word.fetch_add(1, Ordering::SeqCst);
        wake_word(word, i32::MAX as u32);
        Ok(())
    }

    /// The handles of the wire form (none), and a word (unused here).
    pub(crate) fn parts(&self) -> (Vec<BorrowedFd<'_>>, u64) {
        (Vec::new(), 0)
    }

    /// A received waker: no handles.
    pub(crate) fn from_parts(handles: Vec<OwnedFd>, _: u64) -> io::Result<SysWaker> {
        if !handles.is_empty() {
            return Err(invalid("a waker has no handles here"));
        }
        SysWaker::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
