//! Windows: `CreateProcessW`, named pipes, `DuplicateHandle`,
//! `WaitForSingleObject`, `TerminateProcess`, job objects (windows-sys).
//!
//! # Design
//!
//! * **Nothing is inherited but the standard handles.** `CreateProcessW`
//!   gets the child's stdin, stdout and stderr in `STARTUPINFOW` and a
//!   `PROC_THREAD_ATTRIBUTE_HANDLE_LIST` naming exactly those
//!   ([`stdio`]), so a child can never receive another handle by accident,
//!   whatever other threads are spawning at the same time
//!   (rust-lang/rust#38227). The child instead *takes* its end of the
//!   bootstrap channel: the command line carries the parent's pid and the
//!   handle's value in the parent; the child opens the parent with
//!   `PROCESS_DUP_HANDLE | SYNCHRONIZE` and duplicates the handle out of it
//!   ([`open_bootstrap`]). Handles passed later ([`HandleTransfer`]) are
//!   duplicated straight into the child.
//! * **The parent keeps its copy of the child's end** until the child has
//!   been reaped ([`Child::wait`]) or [`Child::release_bootstrap_peer`] is
//!   called. The child does not steal it with `DUPLICATE_CLOSE_SOURCE`: a
//!   child killed before it got that far would leak the handle in the parent
//!   for good (CPython bpo-33929 moved away from stealing for this reason).
//!   The price: while the parent holds that copy, the pipe stays connected
//!   when the child dies, so neither a write into a full pipe nor a read
//!   fails. Every operation that may wait for the child therefore waits on
//!   the child's process handle too: [`Channel::send_bootstrap`] and
//!   [`Channel::read_timeout`] with a `child`.
//!   A [`Child`] dropped before its process took its end hands the copy to
//!   a process-wide list ([`KEPT_PEERS`](child::KEPT_PEERS)) instead of closing it, else the
//!   child could never start; the child tells us when it has its own copy
//!   by setting an event it duplicates out of the parent as well (the
//!   command line carries both handle values), or it exits. Before a worker
//!   exits, [`before_exit`] waits for those children. Handles passed with
//!   [`HandleTransfer`] have no such problem: the parent duplicates them
//!   into the child itself, so the child's copy exists before `spawn`
//!   returns.
//! * **Daemonic children get a kill-on-close job** (below), since
//!   `std::process::exit` is `ExitProcess`, which skips the C runtime's
//!   atexit handlers where the layer above terminates daemons on Unix.
//! * **Channels are named pipes, not `CreatePipe`,** because only named
//!   pipes support overlapped I/O ("Anonymous Pipe Operations" on MSDN:
//!   asynchronous read and write operations are not supported by anonymous
//!   pipes), and overlapped I/O is what lets a read or write also wait for a
//!   timeout or a process exit, without helper threads. The child's end of
//!   the *bootstrap* pipe is an ordinary synchronous handle that any
//!   Windows code can read and write ([`ChildChannel`]); the ends made by
//!   [`pipe()`] (for `Pipe`/`Connection`) are all overlapped ([`Channel`]).
//! * **Each child runs in its own job object**, assigned while the child is
//!   still suspended, so that everything it starts can be ended with it
//!   ([`Child::terminate_tree`]) and, when asked, it dies with this process
//!   (`JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE`; only this process holds the job's
//!   handle).
//! * **No zombies.** A process handle keeps the exit code readable, and the
//!   pid cannot be reused while we hold it; dropping [`Child`] closes
//!   handles and kills nothing. The process handle, never the pid, is the
//!   authority to wait and to terminate.
//!
//! Under Wine 8 (our Linux test bed) a few calls differ from Windows: see the
//! notes at [`Child::terminate`] and `diag::open_handle_count` (a test hook). Standard handles
//! given with `STARTF_USESTDHANDLES` and `PROC_THREAD_ATTRIBUTE_HANDLE_LIST`
//! ([`stdio`]) behave there as on Windows: only the listed handles are
//! inherited (`tests/test_popen.rs` fails under Wine without the list).

use std::ffi::OsStr;
use std::io;
use std::os::windows::ffi::OsStrExt;
use std::os::windows::io::{BorrowedHandle, HandleOrInvalid, HandleOrNull, OwnedHandle};
use std::ptr;
use std::time::Instant;

use windows_sys::core::BOOL;
use windows_sys::Win32::Foundation::{
    ERROR_BROKEN_PIPE, ERROR_NO_DATA, FALSE, HANDLE, TRUE, WAIT_OBJECT_0,
};
use windows_sys::Win32::System::Threading::{CreateEventW, WaitForSingleObject, INFINITE};

use super::RawStatus;
use crate::deadline;

mod args;
mod bootstrap;
mod child;
#[cfg(feature = "test-hooks")]
mod diag;
mod exe;
mod held;
mod job;
mod keeper;
mod lane;
mod memory;
pub(crate) mod npipe;
mod overlapped;
mod pipe;
mod rights;
mod shm;
mod socket;
mod spawn;
mod stdio;
mod sync;
mod wait;

pub(crate) use args::args_os;
pub(crate) use bootstrap::{die_with_parent, open_bootstrap, set_std_handle, ChildChannel};
#[cfg(feature = "test-hooks")]
pub(crate) use child::settle;
pub(crate) use child::{before_exit, reap_in_background, Child, HandleTransfer};
#[cfg(feature = "test-hooks")]
pub(crate) use diag::{
    open_handle_count, open_ipc_handles, process_identity, set_inheritable, thread_count,
    under_wine, watch_process,
};
pub(crate) use exe::RunningImage;
pub(crate) use keeper::{
    note_init as lane_keeper_init, run_keeper as run_lane_keeper,
    set_executable as lane_keeper_executable,
};
pub(crate) use lane::SysLane;
pub(crate) use memory::resident_memory;
pub(crate) use pipe::{pipe, Channel};
pub(crate) use rights::{duplicate, MAX_BLOCK_VALUES, MAX_MESSAGE_HANDLES};
pub(crate) use shm::{shm_create, shm_freeze, shm_map, ShmView};
/// Test hooks: no huge pages on Windows (module docs of `shm.rs`), so
/// never a refusal to report.
#[cfg(feature = "test-hooks")]
pub(crate) fn huge_page_refusal() -> Option<io::Error> {
    None
}

/// Test hooks: nothing to turn off on Windows.
#[cfg(feature = "test-hooks")]
pub(crate) fn set_huge_pages(_: bool) {}

/// How the transparent huge pages of this thread's last block went:
/// always `None` (not tried) on Windows, which has none (`shm.rs`).
#[cfg(feature = "test-hooks")]
pub fn collapse_outcome() -> Option<io::Result<()>> {
    None
}

/// The memory this thread's blocks see as available for the rule of
/// transparent huge pages: nothing to set on Windows (none).
#[cfg(feature = "test-hooks")]
pub fn set_memory_available(_: Option<u64>) {}
pub(crate) use spawn::spawn;
pub(crate) use sync::{SysEvent, SysMutex, SysSemaphore, SysWaker};
pub(crate) use wait::wait_any;

/// An owned OS handle.
pub(crate) type OwnedRaw = OwnedHandle;

/// A borrowed OS handle.
pub(crate) type BorrowedRaw<'a> = BorrowedHandle<'a>;

/// Borrows an owned handle or fd.
pub(crate) fn borrow(h: &OwnedRaw) -> BorrowedRaw<'_> {
    std::os::windows::io::AsHandle::as_handle(h)
}

/// The exit code [`Child::terminate`] gives a process: CPython's
/// `TERMINATE` (`0x10000`), so that "terminated by us" can be told apart
/// from the small codes programs exit with.
const TERMINATE_CODE: u32 = 0x10000;

/// The [`RawStatus`] of a process ended by [`Child::terminate`].
pub(crate) const TERMINATED: RawStatus = RawStatus::Exited(TERMINATE_CODE as i32);

/// In- and out-buffer size of our pipes, in bytes (a hint to the system;
/// "CreateNamedPipeW" on MSDN).
const PIPE_BUFFER: u32 = 64 * 1024;

/// The most one `WriteFile` call is given. A write to a byte-mode pipe in
/// wait mode completes only once all of it has been taken, and the system
/// holds on to a pending write's data, so very large single writes are
/// split. Large enough that the per-call cost vanishes next to the copy.
const MAX_WRITE: usize = 1 << 20;

/// `WaitForMultipleObjects` waits on at most this many handles
/// (`MAXIMUM_WAIT_OBJECTS`).
const MAX_WAIT_OBJECTS: usize = 64;

/// Turns a Win32 `BOOL` result into an `io::Result`, reading `GetLastError`
/// on failure. Call it right after the OS call, before anything else can
/// overwrite the thread's last error.
fn cvt(ok: BOOL) -> io::Result<()> {
    if ok == 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `true` if `err` carries the Win32 error code `code`.
fn is_os_error(err: &io::Error, code: u32) -> bool {
    err.raw_os_error() == Some(code as i32)
}

/// Gives the "the other end is gone" errors of a pipe the kind
/// [`io::ErrorKind::BrokenPipe`]: `ERROR_BROKEN_PIPE` (the other end was
/// closed) and `ERROR_NO_DATA` ("The pipe is being closed", what a write
/// gets once the reader is gone).
fn broken_pipe_kind(err: io::Error) -> io::Error {
    let closed = is_os_error(&err, ERROR_BROKEN_PIPE) || is_os_error(&err, ERROR_NO_DATA);
    if closed && err.kind() != io::ErrorKind::BrokenPipe {
        io::Error::new(io::ErrorKind::BrokenPipe, err)
    } else {
        err
    }
}

/// Takes ownership of what a function returned that reports failure with
/// `INVALID_HANDLE_VALUE` (`CreateFileW`, `CreateNamedPipeW`); on failure,
/// the thread's last error.
///
/// # Safety
///
/// `raw` must be the return value of such a function, called just before
/// (no OS call in between), and owned by nobody else.
unsafe fn owned_or_invalid(raw: HANDLE) -> io::Result<OwnedHandle> {
    // SAFETY: the caller passes a fresh return value that nobody else owns,
    // which is all `HandleOrInvalid` asks.
    let h = unsafe { HandleOrInvalid::from_raw_handle(raw) };
    OwnedHandle::try_from(h).map_err(|_| io::Error::last_os_error())
}

/// Takes ownership of what a function returned that reports failure with
/// `NULL` (`OpenProcess`, `CreateEventW`, `CreateJobObjectW`); on failure,
/// the thread's last error.
///
/// # Safety
///
/// `raw` must be the return value of such a function, called just before
/// (no OS call in between), and owned by nobody else.
unsafe fn owned_or_null(raw: HANDLE) -> io::Result<OwnedHandle> {
    // SAFETY: the caller passes a fresh return value that nobody else owns,
    // which is all `HandleOrNull` asks.
    let h = unsafe { HandleOrNull::from_raw_handle(raw) };
    OwnedHandle::try_from(h).map_err(|_| io::Error::last_os_error())
}

/// `s` as a NUL-terminated UTF-16 string; `InvalidInput` if `s` contains a
/// NUL (the OS would silently cut the string there).
fn to_wide(s: &OsStr) -> io::Result<Vec<u16>> {
    let mut wide: Vec<u16> = s.encode_wide().collect();
    if wide.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{s:?} contains a NUL character"),
        ));
    }
    wide.push(0);
    Ok(wide)
}

/// A handle value as it travels on the command line or in a token.
fn handle_to_token(h: HANDLE) -> u64 {
    h as usize as u64
}

/// A token back to a handle value, checked for the shape handle values have:
/// non-zero, a multiple of 4 (the low two bits are tag bits), and within
/// 32 bits (64-bit Windows keeps handle values 32-bit significant so that
/// they can be shared with 32-bit processes, "Interprocess Communication
/// Between 32-bit and 64-bit Applications" on MSDN). This also keeps out
/// pseudo handles such as `GetCurrentProcess()`'s `-1`.
fn token_to_handle(token: u64) -> io::Result<HANDLE> {
    if token == 0 || !token.is_multiple_of(4) || token > u64::from(u32::MAX) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{token:#x} is not a handle value"),
        ));
    }
    // The check above bounds `token` to 32 bits, which fit in `usize`.
    Ok(token as usize as HANDLE)
}

/// A new manual-reset event, not signaled.
///
/// Manual reset because `GetOverlappedResult` waits on an operation's
/// event and does not expect it to reset itself ("GetOverlappedResult" on
/// MSDN); `ReadFile` and `WriteFile` reset it when an operation starts, so
/// one event serves a sequence of operations.
fn new_event() -> io::Result<OwnedHandle> {
    // SAFETY: no security attributes, no name; the return value is checked
    // by `owned_or_null`.
    let raw = unsafe { CreateEventW(ptr::null(), TRUE, FALSE, ptr::null()) };
    // SAFETY: fresh return value of `CreateEventW`, owned by nobody else.
    unsafe { owned_or_null(raw) }
}

/// Milliseconds for a Win32 wait until `deadline`: `None` (no deadline)
/// waits forever (`INFINITE`); otherwise the time left, rounded up to
/// whole milliseconds (never wake up before it has passed), and at most
/// `INFINITE - 1` (49.7 days), so that a long finite wait never turns into
/// an infinite one by accident: callers wait again until the deadline.
fn ms_until(deadline: Option<Instant>) -> u32 {
    match deadline::left(deadline) {
        None => INFINITE,
        Some(d) => u32::try_from(d.as_nanos().div_ceil(1_000_000))
            .unwrap_or(INFINITE)
            .min(INFINITE - 1),
    }
}

/// `true` if `h` is signaled right now (a process that has exited, a set
/// event); a failed check counts as not signaled.
fn is_signaled(h: HANDLE) -> bool {
    // SAFETY: `h` is an open handle the caller borrows; a zero timeout only
    // polls.
    unsafe { WaitForSingleObject(h, 0) == WAIT_OBJECT_0 }
}

/// Nothing to do on Windows: writes to a closed pipe fail with an error.
pub(crate) fn ignore_sigpipe() {}

/// Milliseconds on a monotonic clock that is cheap to read and coarse:
/// `GetTickCount64` (the system tick, 10-16 ms).
pub(crate) fn coarse_millis() -> u64 {
    // SAFETY: no arguments; it reads the tick count and can't fail.
    unsafe { windows_sys::Win32::System::SystemInformation::GetTickCount64() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn wait_milliseconds_round_up_and_stay_finite() {
        assert_eq!(ms_until(None), INFINITE);
        let far = deadline::deadline(Duration::from_secs(100 * 86_400));
        assert_eq!(ms_until(far), INFINITE - 1);
        assert_eq!(ms_until(Some(Instant::now())), 0);
        let soon = ms_until(deadline::deadline(Duration::from_micros(1_500)));
        assert!((1..=2).contains(&soon), "{soon}");
    }
}
