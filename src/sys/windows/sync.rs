//! Windows: cross-process synchronization objects are unnamed kernel
//! objects (no name that another program could open or squat), passed to
//! children as handles with `DuplicateHandle` (`codec::handles`).
//!
//! - [`SysMutex`]: a mutex (`CreateMutexW`). When its owning thread ends
//!   (its process killed with `TerminateProcess`, say) the system releases
//!   it and the next wait returns `WAIT_ABANDONED` ("Mutex Objects" on
//!   MSDN) to that one waiter only. Next to it lives a manual-reset event,
//!   the *dirty* flag, which we set then, every later lock looks at, and
//!   [`SysMutex::mark_consistent`] clears: so the death is reported to
//!   every acquirer until someone repairs the data, as on Linux. Windows
//!   mutexes are recursive; for a non-recursive one a thread-local list
//!   of the ids of the mutexes this thread holds turns a second lock into
//!   `WouldDeadlock` (the id travels with the handles, since two handles
//!   in one process may name the same mutex).
//! - [`SysSemaphore`]: a semaphore (`CreateSemaphoreW`) with its maximum;
//!   a release past it fails with `ERROR_TOO_MANY_POSTS` and changes
//!   nothing ("ReleaseSemaphore" on MSDN).
//! - [`SysEvent`]: a manual-reset event (`CreateEventW`).
//! - [`SysWaker`]: two manual-reset events, one for each parity of the
//!   counter a sleeper waits on (which lives in the caller's shared
//!   block). A bump to `n` resets event `(n + 1) % 2` (which sleepers that
//!   saw `n` will wait on), stores `n`, and sets event `n % 2`, waking
//!   everyone who saw `n - 1`. Kernel objects can't wait on a word, so
//!   this is the race left: a sleeper that read the counter and then lost
//!   the processor while two bumps went by waits on an event that was set
//!   and reset again. Sleepers therefore look at the counter at least
//!   every 50 ms ([`PROBE`]), which bounds that delay.
//!
//! A received handle is checked to be an object of the right type
//! (`NtQueryObject(ObjectTypeInformation)`: "Mutant", "Semaphore",
//! "Event") before it is used: a wait on a handle of another type (a pipe,
//! a process) would succeed and mean nothing.

use std::cell::RefCell;
use std::io;
use std::os::windows::io::{AsHandle, AsRawHandle, BorrowedHandle, OwnedHandle};
use std::ptr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use windows_sys::Wdk::Foundation::{NtQueryObject, ObjectTypeInformation};
use windows_sys::Win32::Foundation::{
    ERROR_TOO_MANY_POSTS, FALSE, HANDLE, UNICODE_STRING, WAIT_ABANDONED, WAIT_FAILED,
    WAIT_OBJECT_0, WAIT_TIMEOUT,
};
use windows_sys::Win32::System::Threading::{
    CreateMutexW, CreateSemaphoreW, ReleaseMutex, ReleaseSemaphore, ResetEvent, SetEvent,
    WaitForSingleObject,
};

use super::{cvt, is_os_error, is_signaled, ms_until, new_event, owned_or_null};
use crate::deadline;
use crate::sys::LockStatus;

thread_local! {
    /// The ids of the non-recursive mutexes this thread holds.
    static HELD: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// Waits for `h` until `deadline`: `WAIT_OBJECT_0`, `WAIT_ABANDONED` or
/// (once the deadline passed) `WAIT_TIMEOUT`.
fn wait_one(h: HANDLE, deadline: Option<Instant>) -> io::Result<u32> {
    loop {
        let ms = ms_until(deadline);
        // SAFETY: `h` is an open handle the caller borrows.
        match unsafe { WaitForSingleObject(h, ms) } {
            WAIT_FAILED => return Err(io::Error::last_os_error()),
            WAIT_TIMEOUT if !deadline::passed(deadline) => continue,
            r => return Ok(r),
        }
    }
}

/// Checks that `h` is a kernel object of type `want` ("Mutant", ...).
pub(super) fn check_type(h: &OwnedHandle, want: &str) -> io::Result<()> {
    // OBJECT_TYPE_INFORMATION starts with the type's name, a
    // UNICODE_STRING whose buffer follows in the same output buffer.
    let mut buf = [0u64; 128];
    let mut got = 0u32;
    // SAFETY: `h` is open; the output buffer is ours, writable, 8-aligned,
    // of the size given.
    let status = unsafe {
        NtQueryObject(
            h.as_raw_handle(),
            ObjectTypeInformation,
            buf.as_mut_ptr().cast(),
            std::mem::size_of_val(&buf) as u32,
            &mut got,
        )
    };
    if status < 0 {
        return Err(invalid(format!(
            "cannot tell what the handle is (NTSTATUS {status:#x})"
        )));
    }
    let bytes: Vec<u8> = buf.iter().flat_map(|w| w.to_ne_bytes()).collect();
    let head = std::mem::size_of::<UNICODE_STRING>();
    let len = usize::from(u16::from_ne_bytes([bytes[0], bytes[1]]));
    // The name's buffer points into `buf`: find it by its offset.
    let at = {
        const PTR: usize = std::mem::size_of::<usize>();
        let mut p = [0u8; PTR];
        p.copy_from_slice(&bytes[head - PTR..head]);
        usize::from_ne_bytes(p).wrapping_sub(buf.as_ptr() as usize)
    };
    let name: Vec<u16> = bytes
        .get(at..at.saturating_add(len))
        .ok_or_else(|| invalid("a malformed object type name".into()))?
        .chunks_exact(2)
        .map(|c| u16::from_ne_bytes([c[0], c[1]]))
        .collect();
    let name = String::from_utf16_lossy(&name);
    if name != want {
        return Err(invalid(format!(
            "the handle is a {name} object, not a {want}"
        )));
    }
    Ok(())
}

/// The one handle of a received object, checked for its type.
fn one(mut handles: Vec<OwnedHandle>, want: &str) -> io::Result<OwnedHandle> {
    match (handles.pop(), handles.is_empty()) {
        (Some(h), true) => {
            check_type(&h, want)?;
            Ok(h)
        }
        _ => Err(invalid(
            "a synchronization object has exactly one handle".into(),
        )),
    }
}

// ---------------------------------------------------------------------------
// Mutex
// ---------------------------------------------------------------------------

/// A mutex and its dirty flag; see the module docs.
#[derive(Debug)]
pub(crate) struct SysMutex {
    mutex: OwnedHandle,
    dirty: OwnedHandle,
    id: u64,
    recursive: bool,
}

/// A new id: this process's id and a counter.
fn new_id() -> u64 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    (u64::from(std::process::id()) << 32) | u64::from(NEXT.fetch_add(1, Ordering::Relaxed))
}

impl SysMutex {
    /// The number of handles the wire form carries: mutex, dirty flag.
    pub(crate) const HANDLES: usize = 2;

    /// A new unowned mutex; `recursive`: its holder may lock it again.
    pub(crate) fn new(recursive: bool) -> io::Result<SysMutex> {
        // SAFETY: no security attributes, not owned, no name; checked by
        // `owned_or_null`.
        let raw = unsafe { CreateMutexW(ptr::null(), FALSE, ptr::null()) };
        // SAFETY: fresh return value of `CreateMutexW`, owned by nobody else.
        let mutex = unsafe { owned_or_null(raw) }?;
        Ok(SysMutex {
            mutex,
            dirty: new_event()?,
            id: new_id(),
            recursive,
        })
    }

    fn holds(&self) -> bool {
        !self.recursive && HELD.with(|h| h.borrow().contains(&self.id))
    }

    /// Locks, waiting at most until `deadline` (`None`: forever).
    pub(crate) fn lock(&self, deadline: Option<Instant>) -> io::Result<LockStatus> {
        if self.holds() {
            // As an error-checking pthread mutex: a try (a deadline that
            // passed) finds it held, a wait would deadlock.
            return Ok(match deadline::passed(deadline) {
                true => LockStatus::TimedOut,
                false => LockStatus::WouldDeadlock,
            });
        }
        let status = match wait_one(self.mutex.as_raw_handle(), deadline)? {
            WAIT_OBJECT_0 if is_signaled(self.dirty.as_raw_handle()) => LockStatus::OwnerDied,
            WAIT_OBJECT_0 => LockStatus::Acquired,
            WAIT_ABANDONED => {
                // SAFETY: our open event handle.
                cvt(unsafe { SetEvent(self.dirty.as_raw_handle()) })?;
                LockStatus::OwnerDied
            }
            _ => return Ok(LockStatus::TimedOut),
        };
        if !self.recursive {
            HELD.with(|h| h.borrow_mut().push(self.id));
        }
        Ok(status)
    }

    /// Locks if that needs no waiting.
    pub(crate) fn try_lock(&self) -> io::Result<LockStatus> {
        if self.holds() {
            return Ok(LockStatus::TimedOut);
        }
        self.lock(Some(Instant::now()))
    }

    /// Unlocks (the calling thread holds it).
    pub(crate) fn unlock(&self) -> io::Result<()> {
        // SAFETY: our open mutex handle.
        cvt(unsafe { ReleaseMutex(self.mutex.as_raw_handle()) })?;
        if !self.recursive {
            HELD.with(|h| {
                let mut h = h.borrow_mut();
                if let Some(i) = h.iter().rposition(|&id| id == self.id) {
                    h.swap_remove(i);
                }
            });
        }
        Ok(())
    }

    /// Clears the news of a dead holder (the calling thread holds it).
    pub(crate) fn mark_consistent(&self) {
        // SAFETY: our open event handle. It can only fail for a handle
        // without EVENT_MODIFY_STATE, which ours has.
        unsafe { ResetEvent(self.dirty.as_raw_handle()) };
    }

    /// Test hook of the glibc mutex (sleep as a waiter, swallow the
    /// wakeup): a kernel mutex has no futex word to sleep on.
    #[cfg(feature = "test-hooks")]
    pub(crate) fn swallow_a_wakeup(&self) -> io::Result<bool> {
        Err(io::Error::from(io::ErrorKind::Unsupported))
    }

    /// The handles of the wire form (mutex, dirty flag) and the id.
    pub(crate) fn parts(&self) -> (Vec<BorrowedHandle<'_>>, u64) {
        (
            vec![self.mutex.as_handle(), self.dirty.as_handle()],
            self.id,
        )
    }

    /// A received mutex: the handles are checked for their types.
    pub(crate) fn from_parts(
        handles: Vec<OwnedHandle>,
        id: u64,
        recursive: bool,
    ) -> io::Result<SysMutex> {
        let [mutex, dirty]: [OwnedHandle; 2] = handles
            .try_into()
            .map_err(|_| invalid("a mutex has exactly two handles".into()))?;
        check_type(&mutex, "Mutant")?;
        check_type(&dirty, "Event")?;
        Ok(SysMutex {
            mutex,
            dirty,
            id,
            recursive,
        })
    }
}

// ---------------------------------------------------------------------------
// Semaphore
// ---------------------------------------------------------------------------

/// A semaphore; see the module docs.
#[derive(Debug)]
pub(crate) struct SysSemaphore {
    sem: OwnedHandle,
}

impl SysSemaphore {
    /// The number of handles the wire form carries.
    pub(crate) const HANDLES: usize = 1;

    /// A semaphore holding `initial`, at most `max` (both at most
    /// `i32::MAX`, checked above).
    pub(crate) fn new(initial: u32, max: u32) -> io::Result<SysSemaphore> {
        let (Ok(initial), Ok(max)) = (i32::try_from(initial), i32::try_from(max)) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a semaphore's count is at most i32::MAX",
            ));
        };
        // SAFETY: no security attributes, no name; checked by
        // `owned_or_null`.
        let raw = unsafe { CreateSemaphoreW(ptr::null(), initial, max, ptr::null()) };
        // SAFETY: fresh return value of `CreateSemaphoreW`, owned by nobody else.
        let sem = unsafe { owned_or_null(raw) }?;
        Ok(SysSemaphore { sem })
    }

    /// Takes one, waiting at most until `deadline`; false on timeout.
    pub(crate) fn acquire(&self, deadline: Option<Instant>) -> io::Result<bool> {
        Ok(wait_one(self.sem.as_raw_handle(), deadline)? == WAIT_OBJECT_0)
    }

    /// Gives back `n`; false (and nothing given) past the maximum.
    pub(crate) fn release(&self, n: u32) -> io::Result<bool> {
        let n = i32::try_from(n).unwrap_or(i32::MAX);
        // SAFETY: our open semaphore handle; no previous count wanted.
        match cvt(unsafe { ReleaseSemaphore(self.sem.as_raw_handle(), n, ptr::null_mut()) }) {
            Ok(()) => Ok(true),
            Err(e) if is_os_error(&e, ERROR_TOO_MANY_POSTS) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Windows does not tell a semaphore's count.
    pub(crate) fn value(&self) -> Option<u32> {
        None
    }

    /// The handles of the wire form, and a word of its own (unused here).
    pub(crate) fn parts(&self) -> (Vec<BorrowedHandle<'_>>, u64) {
        (vec![self.sem.as_handle()], 0)
    }

    /// A received semaphore: the handle is checked for its type.
    pub(crate) fn from_parts(handles: Vec<OwnedHandle>, _: u64) -> io::Result<SysSemaphore> {
        Ok(SysSemaphore {
            sem: one(handles, "Semaphore")?,
        })
    }
}

// ---------------------------------------------------------------------------
// Event
// ---------------------------------------------------------------------------

/// A manual-reset event; see the module docs.
#[derive(Debug)]
pub(crate) struct SysEvent {
    event: OwnedHandle,
}

impl SysEvent {
    /// The number of handles the wire form carries.
    pub(crate) const HANDLES: usize = 1;

    /// A new event, not set.
    pub(crate) fn new() -> io::Result<SysEvent> {
        Ok(SysEvent {
            event: new_event()?,
        })
    }

    /// Sets it, waking every waiter.
    pub(crate) fn set(&self) -> io::Result<()> {
        // SAFETY: our open event handle.
        cvt(unsafe { SetEvent(self.event.as_raw_handle()) })
    }

    /// Clears it.
    pub(crate) fn clear(&self) -> io::Result<()> {
        // SAFETY: our open event handle.
        cvt(unsafe { ResetEvent(self.event.as_raw_handle()) })
    }

    /// Whether it is set.
    pub(crate) fn is_set(&self) -> io::Result<bool> {
        Ok(wait_one(self.event.as_raw_handle(), Some(Instant::now()))? == WAIT_OBJECT_0)
    }

    /// Waits until it is set, at most until `deadline`; whether it is.
    pub(crate) fn wait(&self, deadline: Option<Instant>) -> io::Result<bool> {
        Ok(wait_one(self.event.as_raw_handle(), deadline)? == WAIT_OBJECT_0)
    }

    /// The handles of the wire form, and a word of its own (unused here).
    pub(crate) fn parts(&self) -> (Vec<BorrowedHandle<'_>>, u64) {
        (vec![self.event.as_handle()], 0)
    }

    /// A received event: the handle is checked for its type.
    pub(crate) fn from_parts(handles: Vec<OwnedHandle>, _: u64) -> io::Result<SysEvent> {
        Ok(SysEvent {
            event: one(handles, "Event")?,
        })
    }
}

// ---------------------------------------------------------------------------
// Waker
// ---------------------------------------------------------------------------

/// How long a [`SysWaker`] sleeper waits at most before it looks at the
/// counter again (see the module docs).
const PROBE: Duration = Duration::from_millis(50);

/// Sleeping until a counter moves on; see the module docs.
#[derive(Debug)]
pub(crate) struct SysWaker {
    events: [OwnedHandle; 2],
}

impl SysWaker {
    /// The number of handles the wire form carries: the two events.
    pub(crate) const HANDLES: usize = 2;

    /// A new waker, both events reset.
    pub(crate) fn new() -> io::Result<SysWaker> {
        Ok(SysWaker {
            events: [new_event()?, new_event()?],
        })
    }

    fn event(&self, n: u32) -> HANDLE {
        self.events[(n % 2) as usize].as_raw_handle()
    }

    /// Sleeps while `word` holds `seen`, at most until `deadline` and at
    /// most [`PROBE`]; may return early: the caller looks again.
    pub(crate) fn wait(
        &self,
        word: &AtomicU32,
        seen: u32,
        deadline: Option<Instant>,
    ) -> io::Result<()> {
        if word.load(Ordering::SeqCst) != seen {
            return Ok(());
        }
        let probe = deadline::deadline(PROBE);
        let until = match (deadline, probe) {
            (Some(d), Some(p)) => Some(d.min(p)),
            (d, p) => d.or(p),
        };
        wait_one(self.event(seen.wrapping_add(1)), until).map(drop)
    }

    /// Adds one to `word` and wakes every sleeper (callers bump one at a
    /// time, under a lock).
    pub(crate) fn bump(&self, word: &AtomicU32) -> io::Result<()> {
        let new = word.load(Ordering::SeqCst).wrapping_add(1);
        // SAFETY: our open event handle.
        cvt(unsafe { ResetEvent(self.event(new.wrapping_add(1))) })?;
        word.store(new, Ordering::SeqCst);
        // SAFETY: our open event handle.
        cvt(unsafe { SetEvent(self.event(new)) })
    }

    /// The handles of the wire form (the two events), and a word (unused
    /// here).
    pub(crate) fn parts(&self) -> (Vec<BorrowedHandle<'_>>, u64) {
        (self.events.iter().map(|e| e.as_handle()).collect(), 0)
    }

    /// A received waker: the handles are checked for their types.
    pub(crate) fn from_parts(handles: Vec<OwnedHandle>, _: u64) -> io::Result<SysWaker> {
        let [a, b]: [OwnedHandle; 2] = handles
            .try_into()
            .map_err(|_| invalid("a waker has exactly two handles".into()))?;
        check_type(&a, "Event")?;
        check_type(&b, "Event")?;
        Ok(SysWaker { events: [a, b] })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_of_another_type_are_refused() {
        let e = SysEvent::new().unwrap();
        let h = e.event.try_clone().unwrap();
        let err = SysSemaphore::from_parts(vec![h], 0).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
        let h = e.event.try_clone().unwrap();
        assert!(SysEvent::from_parts(vec![h], 0).is_ok());
    }

    #[test]
    fn a_relock_by_the_holder_is_refused_not_a_reentry() {
        let m = SysMutex::new(false).unwrap();
        assert_eq!(m.lock(None).unwrap(), LockStatus::Acquired);
        assert_eq!(m.lock(None).unwrap(), LockStatus::WouldDeadlock);
        assert_eq!(m.try_lock().unwrap(), LockStatus::TimedOut);
        m.unlock().unwrap();
        assert_eq!(m.try_lock().unwrap(), LockStatus::Acquired);
        m.unlock().unwrap();
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
        let s = SysSemaphore::new(0, 1).unwrap();
        let err = SysWaker::from_parts(
            vec![e.event.try_clone().unwrap(), s.sem.try_clone().unwrap()],
            0,
        )
        .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
        assert!(SysWaker::from_parts(vec![e.event.try_clone().unwrap()], 0).is_err());
    }
}
