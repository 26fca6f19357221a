//! Windows: `CreateProcessW`, named pipes, `DuplicateHandle`,
//! `WaitForSingleObject`, `TerminateProcess`, job objects (windows-sys).
//!
//! # Design
//!
//! * **Nothing is inherited.** `CreateProcessW` runs with
//!   `bInheritHandles = FALSE`, so a child can never receive a handle by
//!   accident, whatever other threads are spawning at the same time
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
//!   a process-wide list ([`KEPT_PEERS`]) instead of closing it, else the
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
//!   [`pipe`] (for `Pipe`/`Connection`) are all overlapped ([`Channel`]).
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
//! notes at [`Child::terminate`], [`creation_flags`] and
//! [`open_handle_count`].

use std::cell::UnsafeCell;
use std::collections::hash_map::RandomState;
use std::collections::HashSet;
use std::ffi::{c_void, OsStr, OsString};
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::mem::{size_of, MaybeUninit};
use std::os::windows::ffi::OsStrExt;
use std::os::windows::io::{
    AsHandle, AsRawHandle, BorrowedHandle, FromRawHandle, HandleOrInvalid, HandleOrNull,
    OwnedHandle,
};
use std::ptr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use windows_sys::core::BOOL;
use windows_sys::Win32::Foundation::{
    DuplicateHandle, GetHandleInformation, DUPLICATE_SAME_ACCESS, ERROR_ACCESS_DENIED,
    ERROR_BROKEN_PIPE, ERROR_IO_PENDING, ERROR_NO_DATA, ERROR_OPERATION_ABORTED, FALSE,
    GENERIC_READ, GENERIC_WRITE, HANDLE, TRUE, WAIT_ABANDONED_0, WAIT_FAILED, WAIT_OBJECT_0,
    WAIT_TIMEOUT,
};
use windows_sys::Win32::Storage::FileSystem::{
    CreateFileW, GetFileType, ReadFile, WriteFile, FILE_FLAGS_AND_ATTRIBUTES,
    FILE_FLAG_FIRST_PIPE_INSTANCE, FILE_FLAG_OVERLAPPED, FILE_SHARE_READ, FILE_SHARE_WRITE,
    FILE_TYPE_PIPE, OPEN_EXISTING, PIPE_ACCESS_DUPLEX, PIPE_ACCESS_INBOUND,
};
use windows_sys::Win32::System::JobObjects::{
    AssignProcessToJobObject, CreateJobObjectW, JobObjectBasicAccountingInformation,
    JobObjectExtendedLimitInformation, QueryInformationJobObject, SetInformationJobObject,
    TerminateJobObject, JOBOBJECT_BASIC_ACCOUNTING_INFORMATION,
    JOBOBJECT_EXTENDED_LIMIT_INFORMATION, JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE,
};
use windows_sys::Win32::System::Pipes::{
    CreateNamedPipeW, PeekNamedPipe, PIPE_READMODE_BYTE, PIPE_REJECT_REMOTE_CLIENTS,
    PIPE_TYPE_BYTE, PIPE_WAIT,
};
use windows_sys::Win32::System::Threading::{
    CreateEventW, CreateProcessW, GetCurrentProcess, GetExitCodeProcess, OpenProcess, ResumeThread,
    SetEvent, TerminateProcess, WaitForMultipleObjects, WaitForSingleObject, CREATE_NO_WINDOW,
    CREATE_SUSPENDED, CREATE_UNICODE_ENVIRONMENT, DETACHED_PROCESS, INFINITE, PROCESS_DUP_HANDLE,
    PROCESS_INFORMATION, PROCESS_SYNCHRONIZE, STARTUPINFOW,
};
use windows_sys::Win32::System::IO::{CancelIoEx, GetOverlappedResult, OVERLAPPED};

use super::{BootToken, RawStatus, SpawnRequest, StdioMode};
use crate::deadline;

/// An owned OS handle.
pub(crate) type OwnedRaw = OwnedHandle;
/// A borrowed OS handle.
pub(crate) type BorrowedRaw<'a> = BorrowedHandle<'a>;

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

/// The highest handle value [`open_handle_count`] and [`open_ipc_handles`]
/// probe.
#[cfg(feature = "test-hooks")]
const MAX_PROBED_HANDLE: usize = 65536;

// ---------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------

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

/// The bootstrap token's handle field: the value of the child's end of the
/// pipe in the low 32 bits, that of the [`Peer::ack`] event in the high 32
/// bits. Handle values are 32-bit significant (see [`token_to_handle`]),
/// so both fit; a value that does not is refused rather than cut.
fn pack_boot_handles(pipe: HANDLE, ack: HANDLE) -> io::Result<u64> {
    let (pipe, ack) = (handle_to_token(pipe), handle_to_token(ack));
    if pipe > u64::from(u32::MAX) || ack > u64::from(u32::MAX) {
        return Err(io::Error::other("a handle value does not fit in 32 bits"));
    }
    Ok(pipe | ack << 32)
}

/// The other way round: the pipe's handle value and the ack event's, if
/// any (high bits 0: none, as on a hand-written command line).
fn unpack_boot_handles(token: u64) -> io::Result<(HANDLE, Option<HANDLE>)> {
    let pipe = token_to_handle(token & u64::from(u32::MAX))?;
    let ack = match token >> 32 {
        0 => None,
        v => Some(token_to_handle(v)?),
    };
    Ok((pipe, ack))
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

/// Appends `arg` to a command line so that the MSVC C runtime's parser (and
/// Rust's `std::env::args`) reads it back unchanged, as Rust's std
/// (`make_command_line`/`append_arg`) does: quoted if it has a space or a tab
/// or is empty; inside, a `"` gets a backslash, and backslashes are doubled
/// only where they precede a `"` (including the closing one). "Parsing C
/// Command-Line Arguments" on MSDN has the rules.
fn append_arg(cmd: &mut Vec<u16>, arg: &OsStr) -> io::Result<()> {
    const QUOTE: u16 = b'"' as u16;
    const BACKSLASH: u16 = b'\\' as u16;
    let wide: Vec<u16> = arg.encode_wide().collect();
    if wide.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("argument {arg:?} contains a NUL character"),
        ));
    }
    let quote = wide.is_empty()
        || wide
            .iter()
            .any(|&c| c == u16::from(b' ') || c == u16::from(b'\t'));
    if quote {
        cmd.push(QUOTE);
    }
    let mut backslashes = 0usize;
    for &c in &wide {
        if c == BACKSLASH {
            backslashes += 1;
        } else {
            if c == QUOTE {
                // n backslashes before a quote become 2n + 1.
                cmd.extend(std::iter::repeat_n(BACKSLASH, backslashes + 1));
            }
            backslashes = 0;
        }
        cmd.push(c);
    }
    if quote {
        // n backslashes before the closing quote become 2n.
        cmd.extend(std::iter::repeat_n(BACKSLASH, backslashes));
        cmd.push(QUOTE);
    }
    Ok(())
}

/// The full, NUL-terminated command line: the program, always quoted, then
/// the arguments.
///
/// The program name is parsed by simpler rules (everything up to the next
/// `"`, no escapes), so it is quoted as is and may not contain `"`, which
/// Windows file names cannot anyway.
fn make_command_line(exe: &OsStr, args: &[OsString]) -> io::Result<Vec<u16>> {
    let mut cmd = vec![u16::from(b'"')];
    for c in exe.encode_wide() {
        if c == 0 || c == u16::from(b'"') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("program path {exe:?} contains a NUL or '\"'"),
            ));
        }
        cmd.push(c);
    }
    cmd.push(u16::from(b'"'));
    for arg in args {
        cmd.push(u16::from(b' '));
        append_arg(&mut cmd, arg)?;
    }
    cmd.push(0);
    Ok(cmd)
}

/// A fresh pipe name, `\\.\pipe\multiproc-<pid>-<counter>-<random>`: unique
/// in this process by the counter, across processes by the pid, and not
/// guessable in advance by the random part.
fn pipe_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    // `RandomState` is seeded from the OS's random source; hashing the
    // counter with it gives an unpredictable 64-bit value without another
    // dependency.
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(n);
    format!(
        r"\\.\pipe\multiproc-{}-{}-{:016x}",
        std::process::id(),
        n,
        hasher.finish()
    )
}

/// Creates a connected named pipe and returns `(server end, client end)`,
/// neither inheritable (no security attributes).
///
/// The server end is overlapped, byte mode, opened with `server_mode`
/// (`PIPE_ACCESS_DUPLEX`, or `PIPE_ACCESS_INBOUND`: only the client
/// writes); the client end is opened with `client_access` and
/// `client_flags` (`FILE_FLAG_OVERLAPPED` or 0 for a synchronous handle).
///
/// `FILE_FLAG_FIRST_PIPE_INSTANCE` makes creation fail if anyone already
/// made a pipe of that name, and a limit of one instance means nobody can add
/// another; `PIPE_REJECT_REMOTE_CLIENTS` keeps it local. If some other
/// process connects between the two calls, our `CreateFileW` fails with
/// `ERROR_PIPE_BUSY` and so do we: nobody else can end up as the peer.
///
/// No `ConnectNamedPipe`: the client connects before it would be called,
/// and "ConnectNamedPipe" on MSDN says that in this case "there is a good
/// connection between client and server".
fn named_pipe(
    server_mode: FILE_FLAGS_AND_ATTRIBUTES,
    client_access: u32,
    client_flags: FILE_FLAGS_AND_ATTRIBUTES,
) -> io::Result<(OwnedHandle, OwnedHandle)> {
    let name = to_wide(OsStr::new(&pipe_name()))?;
    // SAFETY: `name` is NUL-terminated and outlives the call; no security
    // attributes (so not inheritable); the result is checked below.
    let raw = unsafe {
        CreateNamedPipeW(
            name.as_ptr(),
            server_mode | FILE_FLAG_OVERLAPPED | FILE_FLAG_FIRST_PIPE_INSTANCE,
            PIPE_TYPE_BYTE | PIPE_READMODE_BYTE | PIPE_WAIT | PIPE_REJECT_REMOTE_CLIENTS,
            1,
            PIPE_BUFFER,
            PIPE_BUFFER,
            0,
            ptr::null(),
        )
    };
    // SAFETY: fresh return value of `CreateNamedPipeW`, owned by nobody else.
    let server = unsafe { owned_or_invalid(raw) }?;
    // SAFETY: as above; no sharing, no security attributes; the result is
    // checked below.
    let raw = unsafe {
        CreateFileW(
            name.as_ptr(),
            client_access,
            0,
            ptr::null(),
            OPEN_EXISTING,
            client_flags,
            ptr::null_mut(),
        )
    };
    // SAFETY: fresh return value of `CreateFileW`, owned by nobody else.
    let client = unsafe { owned_or_invalid(raw) }?;
    Ok((server, client))
}

// ---------------------------------------------------------------------------
// Overlapped I/O
// ---------------------------------------------------------------------------

/// One overlapped read or write on a pipe, from start to finish.
///
/// The `OVERLAPPED` lives on the heap and the kernel may write to it until
/// the operation is over, so it is boxed (it never moves) and kept in an
/// `UnsafeCell`; dropping an `Op` that is still pending cancels it and waits
/// until it is over, so neither the `OVERLAPPED` nor the caller's buffer can
/// go away under the kernel. The lifetime `'a` ties both the pipe handle
/// and the buffer to the `Op`: neither can go while it may be pending.
struct Op<'a> {
    /// The pipe the operation runs on.
    pipe: BorrowedHandle<'a>,
    /// Signaled (manual reset) when the operation is over.
    event: OwnedHandle,
    /// The operation's `OVERLAPPED`; its address is in the kernel's hands
    /// while `pending`.
    ov: Box<UnsafeCell<OVERLAPPED>>,
    /// Started and not yet seen to be over.
    pending: bool,
    /// The buffer the kernel reads or writes while pending.
    _buf: std::marker::PhantomData<&'a mut [u8]>,
}

/// How an [`Op`] ended.
enum Finished {
    /// Transferred this many bytes.
    Done(u32),
    /// Canceled (or never started). A canceled read has consumed nothing:
    /// a pipe read completes as soon as any data is there.
    Canceled,
    /// Failed (`ERROR_BROKEN_PIPE` at end-of-file, for example).
    Failed(io::Error),
}

impl<'a> Op<'a> {
    /// A new operation on `pipe`, not started.
    fn new(pipe: BorrowedHandle<'a>) -> io::Result<Self> {
        let event = new_event()?;
        let ov = OVERLAPPED {
            hEvent: event.as_raw_handle(),
            ..OVERLAPPED::default()
        };
        Ok(Op {
            pipe,
            event,
            ov: Box::new(UnsafeCell::new(ov)),
            pending: false,
            _buf: std::marker::PhantomData,
        })
    }

    /// Starts `ReadFile` into `buf`. A zero-length `buf` makes a read that
    /// completes once data (or end-of-file) is there, consuming nothing.
    /// An error means it did not start.
    fn read(&mut self, buf: &'a mut [u8]) -> io::Result<()> {
        let len = buf.len();
        // SAFETY: `buf` is valid for writes of `len` bytes for `'a`.
        unsafe { self.read_raw(buf.as_mut_ptr(), len) }
    }

    /// [`read`](Op::read) into memory that need not be initialized; the
    /// kernel only writes to it.
    fn read_uninit(&mut self, buf: &'a mut [MaybeUninit<u8>]) -> io::Result<()> {
        let len = buf.len();
        // SAFETY: `buf` is valid for writes of `len` bytes for `'a`; the
        // kernel only writes to it, so it need not be initialized.
        unsafe { self.read_raw(buf.as_mut_ptr().cast::<u8>(), len) }
    }

    /// Starts `ReadFile` of up to `len` bytes to `ptr`.
    ///
    /// # Safety
    ///
    /// `ptr` must be valid for writes of `len` bytes for `'a`.
    unsafe fn read_raw(&mut self, ptr: *mut u8, len: usize) -> io::Result<()> {
        self.not_started()?;
        let len = u32::try_from(len).unwrap_or(u32::MAX);
        // SAFETY: `ptr` is valid for `len` bytes for `'a`, which the `Op`
        // does not outlive, and the pipe is borrowed for `'a`; the
        // OVERLAPPED is boxed, unused by any other operation, and stays put
        // until this one is over (`finish`, `Drop`). No byte-count pointer
        // with an OVERLAPPED, as "ReadFile" on MSDN advises.
        let ok = unsafe {
            ReadFile(
                self.pipe.as_raw_handle(),
                ptr,
                len,
                ptr::null_mut(),
                self.ov.get(),
            )
        };
        self.started(ok)
    }

    /// Starts `WriteFile` of `buf` (at most [`MAX_WRITE`] bytes of it).
    fn write(&mut self, buf: &'a [u8]) -> io::Result<()> {
        self.not_started()?;
        let len = buf.len().min(MAX_WRITE) as u32;
        // SAFETY: as in `read_raw`: `buf` and the pipe are borrowed for
        // `'a`, and the boxed OVERLAPPED is free and stays put until the
        // operation is over.
        let ok = unsafe {
            WriteFile(
                self.pipe.as_raw_handle(),
                buf.as_ptr(),
                len,
                ptr::null_mut(),
                self.ov.get(),
            )
        };
        self.started(ok)
    }

    /// An `Op` runs one operation: its OVERLAPPED must not be reused while
    /// the kernel may still hold it.
    fn not_started(&self) -> io::Result<()> {
        if self.pending {
            return Err(io::Error::other(
                "an overlapped operation is already running",
            ));
        }
        Ok(())
    }

    /// Records the outcome of the `ReadFile`/`WriteFile` call: pending
    /// unless it failed outright (then the error is returned, and nothing is
    /// pending).
    fn started(&mut self, ok: BOOL) -> io::Result<()> {
        if ok == 0 {
            let err = io::Error::last_os_error();
            if !is_os_error(&err, ERROR_IO_PENDING) {
                return Err(err);
            }
        }
        // Completed at once or pending: either way the event is (or will
        // be) set and GetOverlappedResult tells the outcome.
        self.pending = true;
        Ok(())
    }

    /// The event that is set when the operation is over.
    fn event(&self) -> HANDLE {
        self.event.as_raw_handle()
    }

    /// Cancels the operation if it is still running, waits until it is
    /// over and reports how it ended. It may have completed in the meantime:
    /// then its bytes count (`CancelIoEx` fails with `ERROR_NOT_FOUND`).
    fn cancel(&mut self) -> Finished {
        if self.pending && !is_signaled(self.event()) {
            // SAFETY: cancels only the request identified by our OVERLAPPED
            // on `pipe`, which is borrowed (open) for the `Op`'s lifetime.
            unsafe { CancelIoEx(self.pipe.as_raw_handle(), self.ov.get()) };
        }
        self.finish()
    }

    /// Waits until the operation is over and reports how it ended.
    fn finish(&mut self) -> Finished {
        if !self.pending {
            return Finished::Canceled;
        }
        let mut n = 0u32;
        // SAFETY: the OVERLAPPED belongs to the operation started on `pipe`;
        // with bWait = TRUE this returns only once it is over ("CancelIoEx"
        // on MSDN: wait for the completion this way after canceling).
        let ok =
            unsafe { GetOverlappedResult(self.pipe.as_raw_handle(), self.ov.get(), &mut n, TRUE) };
        let err = (ok == 0).then(io::Error::last_os_error);
        self.pending = false;
        match err {
            None => Finished::Done(n),
            Some(e) if is_os_error(&e, ERROR_OPERATION_ABORTED) => Finished::Canceled,
            Some(e) => Finished::Failed(e),
        }
    }
}

impl Drop for Op<'_> {
    fn drop(&mut self) {
        let _ = self.cancel();
    }
}

/// Waits until one of `handles` is signaled or `timeout_ms` passes;
/// `Ok(Some(i))` for the first signaled one (the lowest index wins when
/// several are), `Ok(None)` on timeout. Any number of handles: beyond
/// [`MAX_WAIT_OBJECTS`], helper threads wait on groups of them.
fn wait_for_any(handles: &[HANDLE], timeout_ms: u32) -> io::Result<Option<usize>> {
    if handles.len() <= MAX_WAIT_OBJECTS {
        return wait_for_group(handles, timeout_ms);
    }
    // Each helper waits on its group plus `stop`, which the first to see
    // something sets, so that the others return at once.
    let stop = new_event()?;
    let stop_raw = stop.as_raw_handle() as usize;
    let group = MAX_WAIT_OBJECTS - 1;
    let results: Vec<io::Result<Option<usize>>> = std::thread::scope(|s| {
        let mut workers = Vec::new();
        let mut failed = None;
        for (k, chunk) in handles.chunks(group).enumerate() {
            // Raw handles are pointers, which are not `Send`; the handles
            // stay open (borrowed by our caller) until the scope ends.
            let len = chunk.len();
            let mut raw: Vec<usize> = chunk.iter().map(|&h| h as usize).collect();
            raw.push(stop_raw);
            let started = std::thread::Builder::new().spawn_scoped(s, move || {
                let hs: Vec<HANDLE> = raw.iter().map(|&h| h as HANDLE).collect();
                let got = wait_for_group(&hs, timeout_ms);
                // SAFETY: `stop` is open until the scope ends.
                unsafe { SetEvent(stop_raw as HANDLE) };
                match got {
                    Ok(Some(i)) if i == len => Ok(None), // `stop`
                    Ok(Some(i)) => Ok(Some(k * group + i)),
                    other => other,
                }
            });
            match started {
                Ok(w) => workers.push(w),
                Err(e) => {
                    // No thread to spare (a resource limit): stop the
                    // helpers already waiting and report it.
                    // SAFETY: `stop` is open until the scope ends.
                    unsafe { SetEvent(stop_raw as HANDLE) };
                    failed = Some(e);
                    break;
                }
            }
        }
        let mut results: Vec<io::Result<Option<usize>>> = workers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|_| Err(io::Error::other("a wait helper thread panicked")))
            })
            .collect();
        if let Some(e) = failed {
            results.push(Err(e));
        }
        results
    });
    let mut first = None;
    for r in results {
        if let Some(i) = r? {
            first = Some(first.map_or(i, |f: usize| f.min(i)));
        }
    }
    Ok(first)
}

/// `WaitForMultipleObjects` on at most [`MAX_WAIT_OBJECTS`] handles (see
/// [`wait_for_any`]).
fn wait_for_group(handles: &[HANDLE], timeout_ms: u32) -> io::Result<Option<usize>> {
    let n = handles.len() as u32;
    // SAFETY: `handles` holds `n` (1 to 64) open handles with SYNCHRONIZE,
    // borrowed for the call; bWaitAll = FALSE.
    let woken = unsafe { WaitForMultipleObjects(n, handles.as_ptr(), FALSE, timeout_ms) };
    match woken {
        WAIT_TIMEOUT => Ok(None),
        WAIT_FAILED => Err(io::Error::last_os_error()),
        w if (WAIT_OBJECT_0..WAIT_OBJECT_0 + n).contains(&w) => {
            Ok(Some((w - WAIT_OBJECT_0) as usize))
        }
        // An abandoned mutex counts as signaled.
        w if (WAIT_ABANDONED_0..WAIT_ABANDONED_0 + n).contains(&w) => {
            Ok(Some((w - WAIT_ABANDONED_0) as usize))
        }
        other => Err(io::Error::other(format!(
            "WaitForMultipleObjects returned {other:#x}"
        ))),
    }
}

// ---------------------------------------------------------------------------
// Parent side: spawning
// ---------------------------------------------------------------------------

/// Starts `req.exe` with the bootstrap channel ready for it to take.
///
/// The child gets no handles at all (`bInheritHandles = FALSE`); its
/// arguments, built by `req.args`, carry where its end of the channel is.
/// It starts suspended, is put into its own job object (with
/// `KILL_ON_JOB_CLOSE` if `req.kill_on_parent_death`), then resumed, so it
/// runs no code outside the job. On error every handle made so far is
/// closed (they are owned from the moment they exist) and a child already
/// created is terminated and waited for.
pub(crate) fn spawn(req: &SpawnRequest<'_>) -> io::Result<(Child, Channel)> {
    prune_kept_peers();
    let (server, client) = named_pipe(PIPE_ACCESS_DUPLEX, GENERIC_READ | GENERIC_WRITE, 0)?;
    let ack = new_event()?;
    let token = BootToken {
        parent_pid: std::process::id(),
        handle: pack_boot_handles(client.as_raw_handle(), ack.as_raw_handle())?,
    };
    let args = (req.args)(token);
    let app = to_wide(req.exe.as_os_str())?;
    let mut cmd = make_command_line(req.exe.as_os_str(), &args)?;
    // `req.new_group` is a Unix matter: here every child gets its own job,
    // which nests in the job we are in ourselves (Windows 8 and later), so
    // a `terminate_tree` from further up still reaches nested workers.
    let _ = req.new_group;
    // Windows can't start a process from the running image; `exe` is the
    // path it was started from (a running executable can be renamed but
    // not deleted or overwritten).
    let _ = req.running_image;
    let (process, thread, pid) = create_process(&app, &mut cmd, creation_flags(req.stdio))?;
    // A daemonic child must not outlive our normal exit, which on Windows
    // is `ExitProcess` (Rust's `std::process::exit`): that skips the C
    // runtime's atexit handlers, so the hook that terminates daemons does
    // not run. A kill-on-close job, whose only handle we hold, does it
    // whatever way we exit.
    let kill_on_close = req.kill_on_parent_death || req.daemon;
    let job = match contain(&process, &thread, kill_on_close) {
        Ok(job) => job,
        Err(err) => {
            // Still suspended: it has run no code of its own.
            kill_and_reap(&process);
            return Err(err);
        }
    };
    drop(thread);
    let child = Child {
        process: Arc::new(process),
        pid,
        job,
        bootstrap_peer: Mutex::new(Some(Peer { pipe: client, ack })),
        status: OnceLock::new(),
    };
    Ok((child, Channel { pipe: server }))
}

/// The process creation flags for a child with these standard streams.
///
/// Always `CREATE_SUSPENDED` (see [`spawn`]) and
/// `CREATE_UNICODE_ENVIRONMENT` (harmless with the inherited environment,
/// required once one is passed).
///
/// Consoles ("Creation of a Console" and "Process Creation Flags" on
/// MSDN), for a console-subsystem child:
/// - This process has a console: no console flag. The child shares the
///   console, and since there is no `STARTF_USESTDHANDLES`, CreateProcess
///   duplicates our standard handles into it (duplicated, not inherited:
///   `bInheritHandles` stays FALSE). That is [`StdioMode::Inherit`], and no
///   window opens. `CREATE_NO_WINDOW` would be wrong here: it gives the
///   child a new console of its own, without a window, and the child's
///   standard handles point at that, so its output would vanish.
/// - This process has no console (started detached, a service): the child
///   would get a new console, and a window would flash up for every
///   worker. `CREATE_NO_WINDOW` makes that console windowless. Its output
///   has nowhere to go either way. (Wine 8 differs: there a child without
///   a console flag writes to the parent's redirected handles.)
/// - All three [`StdioMode::Null`]: `DETACHED_PROCESS`, no console at all;
///   the child's standard handles are null, and Rust's std then discards
///   what is written to them and reads end-of-file.
///
/// A GUI-subsystem child ignores these flags.
///
/// A mix of `Null` and `Inherit` starts the child as all `Inherit`; the
/// worker then opens `NUL` for its `Null` streams itself, right after its
/// bootstrap (`sys::worker_nulls`). Doing it here would mean passing the
/// NUL device and the parent's handles in `STARTUPINFOW` with
/// `STARTF_USESTDHANDLES`, which only works with inheritance
/// (`bInheritHandles = TRUE` restricted by `PROC_THREAD_ATTRIBUTE_HANDLE_LIST`).
fn creation_flags(stdio: [StdioMode; 3]) -> u32 {
    let base = CREATE_SUSPENDED | CREATE_UNICODE_ENVIRONMENT;
    if stdio == [StdioMode::Null; 3] {
        base | DETACHED_PROCESS
    } else if has_console() {
        base
    } else {
        base | CREATE_NO_WINDOW
    }
}

/// Whether this process is attached to a console: only then can it open
/// `CONOUT$`, the console's active screen buffer ("Console Handles" on
/// MSDN). Asked at each spawn, since `AllocConsole`/`FreeConsole` can
/// change it.
fn has_console() -> bool {
    let name: Vec<u16> = "CONOUT$\0".encode_utf16().collect();
    // SAFETY: `name` is NUL-terminated and outlives the call; shared access,
    // no security attributes; the result is checked below.
    let raw = unsafe {
        CreateFileW(
            name.as_ptr(),
            GENERIC_READ | GENERIC_WRITE,
            FILE_SHARE_READ | FILE_SHARE_WRITE,
            ptr::null(),
            OPEN_EXISTING,
            0,
            ptr::null_mut(),
        )
    };
    // SAFETY: fresh return value of `CreateFileW`, owned by nobody else; it
    // is closed again at once.
    unsafe { owned_or_invalid(raw) }.is_ok()
}

/// `CreateProcessW` without inheritance; returns the process handle, the
/// main thread's handle and the pid.
fn create_process(
    app: &[u16],
    cmd: &mut [u16],
    flags: u32,
) -> io::Result<(OwnedHandle, OwnedHandle, u32)> {
    let startup = STARTUPINFOW {
        cb: size_of::<STARTUPINFOW>() as u32,
        ..STARTUPINFOW::default()
    };
    let mut info = PROCESS_INFORMATION::default();
    // SAFETY: `app` (`lpApplicationName`, so no search path is used) is
    // NUL-terminated; `cmd` is a NUL-terminated, writable buffer
    // (CreateProcessW may modify it); both outlive the call. No security
    // attributes, no inheritance, inherited environment and directory;
    // `startup` and `info` are valid for the call.
    let ok = unsafe {
        CreateProcessW(
            app.as_ptr(),
            cmd.as_mut_ptr(),
            ptr::null(),
            ptr::null(),
            FALSE,
            flags,
            ptr::null(),
            ptr::null(),
            &startup,
            &mut info,
        )
    };
    cvt(ok)?;
    // SAFETY: on success `hProcess` is a new handle to the child, ours alone.
    let process = unsafe { OwnedHandle::from_raw_handle(info.hProcess) };
    // SAFETY: on success `hThread` is a new handle to its main thread, ours
    // alone.
    let thread = unsafe { OwnedHandle::from_raw_handle(info.hThread) };
    Ok((process, thread, info.dwProcessId))
}

/// Puts the suspended `process` into a new job object and resumes `thread`.
///
/// With `kill_on_close` the job gets `JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE`:
/// when its last handle closes (ours; also when this process dies,
/// however) every process in it is killed. If the job cannot be joined
/// (`AssignProcessToJobObject` fails, e.g. under a parent job that forbids
/// nesting) that is an error only when `kill_on_close` asks for it;
/// otherwise the child runs without a job and `terminate_tree` ends only
/// the child itself.
fn contain(
    process: &OwnedHandle,
    thread: &OwnedHandle,
    kill_on_close: bool,
) -> io::Result<Option<Job>> {
    // SAFETY: no security attributes (not inheritable), no name; the result
    // is checked by `owned_or_null`.
    let raw = unsafe { CreateJobObjectW(ptr::null(), ptr::null()) };
    // SAFETY: fresh return value of `CreateJobObjectW`, owned by nobody else.
    let job = unsafe { owned_or_null(raw) }?;
    if kill_on_close {
        let mut limits = JOBOBJECT_EXTENDED_LIMIT_INFORMATION::default();
        limits.BasicLimitInformation.LimitFlags = JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE;
        // SAFETY: `job` is open; `limits` is the structure the class
        // names, with its size, valid for the call.
        let ok = unsafe {
            SetInformationJobObject(
                job.as_raw_handle(),
                JobObjectExtendedLimitInformation,
                (&limits as *const JOBOBJECT_EXTENDED_LIMIT_INFORMATION).cast::<c_void>(),
                size_of::<JOBOBJECT_EXTENDED_LIMIT_INFORMATION>() as u32,
            )
        };
        cvt(ok)?;
    }
    // SAFETY: both handles are open; the process handle has
    // PROCESS_SET_QUOTA and PROCESS_TERMINATE (all access).
    let assigned =
        cvt(unsafe { AssignProcessToJobObject(job.as_raw_handle(), process.as_raw_handle()) });
    let job = match assigned {
        Ok(()) => Some(Job {
            handle: job,
            kill_on_close,
        }),
        Err(err) if kill_on_close => return Err(err),
        Err(_) => None,
    };
    // SAFETY: `thread` is the child's main thread, open with all access;
    // it was created suspended (count 1), so this lets it run.
    if unsafe { ResumeThread(thread.as_raw_handle()) } == u32::MAX {
        return Err(io::Error::last_os_error());
    }
    Ok(job)
}

/// Best effort for a child that must not live on: terminate it and, if that
/// worked, wait until it is gone.
fn kill_and_reap(process: &OwnedHandle) {
    // SAFETY: `process` is open with PROCESS_TERMINATE.
    if unsafe { TerminateProcess(process.as_raw_handle(), TERMINATE_CODE) } != 0 {
        // SAFETY: `process` is open with SYNCHRONIZE; a terminated process
        // is signaled promptly.
        unsafe { WaitForSingleObject(process.as_raw_handle(), INFINITE) };
    }
}

/// A child's job object.
struct Job {
    /// The job (all access). Only this process has a handle to it.
    handle: OwnedHandle,
    /// Whether it kills its processes when the handle closes.
    kill_on_close: bool,
}

impl Job {
    /// Whether any process is still in the job. `true` if that can't be
    /// told (keep rather than kill).
    fn has_processes(&self) -> bool {
        let mut info = JOBOBJECT_BASIC_ACCOUNTING_INFORMATION::default();
        // SAFETY: `handle` is open with JOB_OBJECT_QUERY; `info` is the
        // structure the class names, with its size; no return length.
        let ok = unsafe {
            QueryInformationJobObject(
                self.handle.as_raw_handle(),
                JobObjectBasicAccountingInformation,
                (&mut info as *mut JOBOBJECT_BASIC_ACCOUNTING_INFORMATION).cast::<c_void>(),
                size_of::<JOBOBJECT_BASIC_ACCOUNTING_INFORMATION>() as u32,
                ptr::null_mut(),
            )
        };
        ok == 0 || info.ActiveProcesses > 0
    }
}

/// Jobs with `KILL_ON_JOB_CLOSE` whose [`Child`] was dropped while processes
/// were still in them. Closing the handle would kill those processes, but
/// dropping a `Child` must not kill; so the handle is kept until the job is
/// empty (checked whenever another one is added) or this process exits,
/// which then kills them as promised.
static KEPT_JOBS: Mutex<Vec<Job>> = Mutex::new(Vec::new());

/// Closes the kept jobs that have emptied since (they are otherwise
/// pruned at the next drop of a `Child`), and the kept bootstrap peers
/// ([`KEPT_PEERS`]) whose children took them or exited. Wine updates a
/// job's process count a moment after the process exits, so a job can be
/// kept although its only process was already reaped. Returns how many
/// are still kept.
#[cfg(feature = "test-hooks")]
pub(crate) fn settle() -> usize {
    let mut kept = KEPT_JOBS.lock().unwrap_or_else(PoisonError::into_inner);
    kept.retain(Job::has_processes);
    let jobs = kept.len();
    drop(kept);
    let mut peers = KEPT_PEERS.lock().unwrap_or_else(PoisonError::into_inner);
    peers.retain(|k| !k.done());
    jobs + peers.len()
}

// ---------------------------------------------------------------------------
// Parent side: the child
// ---------------------------------------------------------------------------

/// A started child process.
///
/// Owns the process handle (which keeps the pid from being reused and the
/// exit code readable), its job object, and, until the child is reaped, the
/// parent's copy of the child's end of the bootstrap pipe.
///
/// # Drop
///
/// Dropping it closes those handles; the process keeps running. Two are
/// handed over instead of closed, so that dropping neither kills nor keeps
/// the child from starting:
/// - a job with `KILL_ON_JOB_CLOSE` still holding processes is kept open
///   until it is empty or this process exits ([`KEPT_JOBS`]), so that
///   dropping does not kill while parent death still does;
/// - the bootstrap peer, if the child has not taken its end yet (right
///   after [`spawn`] returned it is usually still starting), is kept until
///   it has or has exited ([`KEPT_PEERS`]). Closed now, the child would
///   find nothing to duplicate and could never start.
pub(crate) struct Child {
    /// The process handle from `CreateProcessW` (all access); shared with
    /// [`KEPT_PEERS`] once the `Child` is dropped.
    process: Arc<OwnedHandle>,
    /// The process id, for display and the child's command line only.
    pid: u32,
    /// The child's job object, if it could join one.
    job: Option<Job>,
    /// The parent's copy of the child's end of the bootstrap pipe: the value
    /// the child duplicates out of us, so it must stay open until the child
    /// has done that or is gone (module docs).
    bootstrap_peer: Mutex<Option<Peer>>,
    /// The exit status, once the OS has confirmed the exit.
    status: OnceLock<RawStatus>,
}

/// The parent's side of the child taking its end of the bootstrap pipe.
struct Peer {
    /// The parent's copy of the child's end: the handle value the child's
    /// command line names and the child duplicates out of this process.
    /// Only held, never used: its point is to stay open.
    #[allow(dead_code, reason = "held open for the child to duplicate")]
    pipe: OwnedHandle,
    /// A manual-reset event the child duplicates out of this process too
    /// and sets once it has its own copy of `pipe` ([`open_bootstrap`]):
    /// from then on ours is no longer needed.
    ack: OwnedHandle,
}

/// The bootstrap peer of a dropped [`Child`] that had not yet taken it,
/// with the child's process handle.
struct KeptPeer {
    /// Signaled once the child has exited.
    process: Arc<OwnedHandle>,
    /// What the child has not taken yet.
    peer: Peer,
}

impl KeptPeer {
    /// Whether it can go: the child took its end (set the ack) or exited.
    fn done(&self) -> bool {
        is_signaled(self.peer.ack.as_raw_handle()) || is_signaled(self.process.as_raw_handle())
    }
}

/// Bootstrap peers of children dropped before they took them (issue 9:
/// `drop(Process::spawn(..))` must still run the child). Kept until the
/// child has taken its end or exited: checked at every spawn, every drop
/// of a `Child` and [`settle`], and waited for before this process exits
/// ([`before_exit`]). One list for the process, no thread: each entry holds
/// three handles (the pipe end, the ack event and the process handle, which
/// nothing else holds by then) for as long as its child is starting.
static KEPT_PEERS: Mutex<Vec<KeptPeer>> = Mutex::new(Vec::new());

/// The longest [`before_exit`] waits, in all, for children still starting.
const EXIT_GRACE: Duration = Duration::from_secs(10);

/// Hands `k` to [`KEPT_PEERS`], or closes it at once if it is already done;
/// prunes the list on the way.
fn keep_peer(k: KeptPeer) {
    static HOOK: std::sync::Once = std::sync::Once::new();
    let mut kept = KEPT_PEERS.lock().unwrap_or_else(PoisonError::into_inner);
    kept.retain(|k| !k.done());
    if !k.done() {
        kept.push(k);
        drop(kept);
        // Returning from `main` runs the C runtime's exit handlers (not so
        // `std::process::exit`: see [`before_exit`]).
        HOOK.call_once(|| {
            let _ = super::at_exit(before_exit_hook);
        });
    }
}

/// Closes the kept peers whose children took them or exited.
fn prune_kept_peers() {
    let mut kept = KEPT_PEERS.lock().unwrap_or_else(PoisonError::into_inner);
    kept.retain(|k| !k.done());
}

/// Before this process exits: waits until every child dropped before it
/// took its end of the bootstrap pipe has taken it or exited, at most
/// [`EXIT_GRACE`] in all. Exiting closes our copy, and a child that had not
/// taken it by then could never start (a worker that spawns a grandchild
/// and returns at once). Called by a worker before it exits, and by an
/// atexit hook when `main` returns; a program that calls
/// `std::process::exit` (`ExitProcess`, which skips atexit handlers) right
/// after dropping a child that is still starting may lose it.
pub(crate) fn before_exit() {
    let kept = std::mem::take(&mut *KEPT_PEERS.lock().unwrap_or_else(PoisonError::into_inner));
    let deadline = Some(Instant::now() + EXIT_GRACE);
    for k in &kept {
        let handles = [k.peer.ack.as_raw_handle(), k.process.as_raw_handle()];
        let _ = wait_for_any(&handles, ms_until(deadline));
    }
}

/// [`before_exit`] as a C runtime exit handler.
extern "C" fn before_exit_hook() {
    before_exit();
}

impl Child {
    /// The process id.
    pub(crate) fn id(&self) -> u32 {
        self.pid
    }

    /// Waits up to `timeout` (`None`: forever) for the process to exit.
    ///
    /// `Ok(None)` on timeout; `Ok(Some(status))` once the process has exited,
    /// which is recorded, and the bootstrap peer released. Several threads
    /// may wait at once; all see the same status.
    pub(crate) fn wait(&self, timeout: Option<Duration>) -> io::Result<Option<RawStatus>> {
        if let Some(status) = self.status.get() {
            return Ok(Some(*status));
        }
        let handle = self.process.as_raw_handle();
        let deadline = deadline::deadline_of(timeout);
        let woken = loop {
            // SAFETY: `handle` is our open process handle, which has SYNCHRONIZE.
            let woken = unsafe { WaitForSingleObject(handle, ms_until(deadline)) };
            // A wait clamped to 49.7 days may end before the deadline.
            if woken != WAIT_TIMEOUT || deadline::passed(deadline) {
                break woken;
            }
        };
        match woken {
            WAIT_OBJECT_0 => {}
            WAIT_TIMEOUT => return Ok(None),
            WAIT_FAILED => return Err(io::Error::last_os_error()),
            other => {
                return Err(io::Error::other(format!(
                    "WaitForSingleObject on a process returned {other:#x}"
                )))
            }
        }
        let mut code = 0u32;
        // SAFETY: `handle` is open with PROCESS_QUERY_INFORMATION; `code` is
        // a valid place for the result. The process has exited, so the code
        // is final (not the STILL_ACTIVE placeholder).
        cvt(unsafe { GetExitCodeProcess(handle, &mut code) })?;
        let status = *self.status.get_or_init(|| RawStatus::Exited(code as i32));
        self.release_bootstrap_peer();
        Ok(Some(status))
    }

    /// Ends the process with exit code `0x10000` ([`TERMINATED`]).
    ///
    /// `Ok` if the process had already exited. Records nothing: the process
    /// may still be running when this returns; [`wait`](Self::wait) reports
    /// the outcome (CPython gh-110036, gh-113009).
    ///
    /// `TerminateProcess` on a process that has exited fails with
    /// `ERROR_ACCESS_DENIED` on Windows; we then check whether it has exited
    /// and call that success, as Rust's std does in `Child::kill`. (Wine 8
    /// differs: there the second `TerminateProcess` succeeds and the exit
    /// code stays, so the outcome is the same.)
    pub(crate) fn terminate(&self) -> io::Result<()> {
        if self.status.get().is_some() {
            return Ok(());
        }
        let handle = self.process.as_raw_handle();
        // SAFETY: `handle` is our open process handle, with PROCESS_TERMINATE.
        let ok = unsafe { TerminateProcess(handle, TERMINATE_CODE) };
        if ok != 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if is_os_error(&err, ERROR_ACCESS_DENIED) && is_signaled(handle) {
            return Ok(());
        }
        Err(err)
    }

    /// Same as [`terminate`](Self::terminate): Windows has no gentler and
    /// no harder way (CPython: `kill = terminate`).
    pub(crate) fn kill(&self) -> io::Result<()> {
        self.terminate()
    }

    /// Ends the child and every process in its job (all it started, unless
    /// they broke away) with exit code `0x10000`: `TerminateJobObject`.
    /// `Ok` if they had all exited. Without a job (see [`spawn`]), the same as
    /// [`terminate`](Self::terminate).
    pub(crate) fn terminate_tree(&self) -> io::Result<()> {
        let Some(job) = &self.job else {
            return self.terminate();
        };
        // SAFETY: the job handle is open with JOB_OBJECT_TERMINATE; an empty
        // job is no error.
        cvt(unsafe { TerminateJobObject(job.handle.as_raw_handle(), TERMINATE_CODE) })
    }

    /// Same as [`terminate_tree`](Self::terminate_tree).
    pub(crate) fn kill_tree(&self) -> io::Result<()> {
        self.terminate_tree()
    }

    /// The process handle: signaled once the process has exited.
    pub(crate) fn sentinel(&self) -> Option<BorrowedRaw<'_>> {
        Some(self.process.as_handle())
    }

    /// Closes the parent's copy of the child's end of the bootstrap pipe.
    /// Call it once the child has taken its end (or is gone); afterwards
    /// reads on the [`Channel`] see end-of-file when the child exits. Done
    /// by [`wait`](Self::wait) anyway once the child has exited.
    pub(crate) fn release_bootstrap_peer(&self) {
        let peer = self
            .bootstrap_peer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        drop(peer);
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let peer = self
            .bootstrap_peer
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(peer) = peer {
            keep_peer(KeptPeer {
                process: Arc::clone(&self.process),
                peer,
            });
        }
        let Some(job) = self.job.take() else { return };
        if job.kill_on_close && job.has_processes() {
            let mut kept = KEPT_JOBS.lock().unwrap_or_else(PoisonError::into_inner);
            kept.retain(Job::has_processes);
            kept.push(job);
        }
    }
}

/// This process's command line (std has it before `main` too).
pub(crate) fn args_os() -> Vec<std::ffi::OsString> {
    std::env::args_os().collect()
}

/// Nothing to do: Windows has no zombies (the exit code lives as long as
/// a handle on the process, which the `Child` owns).
pub(crate) fn reap_in_background(_child: &std::sync::Arc<Child>) {}

/// Handles made available to a child while it is spawned.
///
/// On Windows a handle is duplicated straight into the child's handle table
/// by [`add`](Self::add); nothing is left to do at send time.
#[derive(Debug, Default)]
pub(crate) struct HandleTransfer {
    /// Nothing to keep; a field so that callers write `default()` for it as
    /// for the Unix one, which has state.
    _private: (),
}

impl HandleTransfer {
    /// Duplicates `h` into `child` (same access, not inheritable) and
    /// returns its value there: the token for `ChildChannel::take_handle`.
    ///
    /// If the child never takes it, the duplicate is closed when the child
    /// exits, like every handle of a process.
    pub(crate) fn add(&mut self, child: &Child, h: BorrowedRaw<'_>) -> io::Result<u64> {
        let mut out: HANDLE = ptr::null_mut();
        // SAFETY: plain call; returns the pseudo handle of this process,
        // which needs no closing.
        let me = unsafe { GetCurrentProcess() };
        // SAFETY: `h` is open (borrowed); `child.process` is open with
        // PROCESS_DUP_HANDLE; `out` is a valid place for the result, a value
        // in the *child's* table, which we must not (and do not) wrap or
        // close here.
        let ok = unsafe {
            DuplicateHandle(
                me,
                h.as_raw_handle(),
                child.process.as_raw_handle(),
                &mut out,
                0,
                FALSE,
                DUPLICATE_SAME_ACCESS,
            )
        };
        cvt(ok)?;
        Ok(handle_to_token(out))
    }
}

// ---------------------------------------------------------------------------
// Channels
// ---------------------------------------------------------------------------

/// An overlapped pipe end: the parent's end of the bootstrap channel, or an
/// end of a [`pipe`]. Each operation has its own `OVERLAPPED` and event, so
/// several threads may read and write at once.
///
/// # Drop
///
/// Closes this process's handle; the peer sees end-of-file once every copy
/// of this end is closed.
pub(crate) struct Channel {
    /// The pipe end, opened with `FILE_FLAG_OVERLAPPED`.
    pipe: OwnedHandle,
}

impl Channel {
    /// Writes all of `data` to the child, unless the child exits first:
    /// then an error of kind `BrokenPipe`. Never hangs on a dead child.
    ///
    /// Each write waits on its completion *and* the child's process handle.
    /// The parent still holds the child's end
    /// ([`Child::release_bootstrap_peer`]), so a dead child does not make
    /// the write fail: without the process handle it would wait forever
    /// once the pipe buffer is full. If the write completes as the child
    /// exits, the write wins (the lower index): the data was taken, as a
    /// pipe write to a child that dies a moment later would be on Unix. The
    /// handles in `_transfer` are already in the child.
    pub(crate) fn send_bootstrap(
        &self,
        child: &Child,
        data: &[u8],
        _transfer: HandleTransfer,
    ) -> io::Result<()> {
        let mut rest = data;
        while !rest.is_empty() {
            let mut op = Op::new(self.pipe.as_handle())?;
            op.write(rest).map_err(broken_pipe_kind)?;
            let woken = wait_for_any(&[op.event(), child.process.as_raw_handle()], INFINITE);
            let finished = op.finish_if(matches!(woken, Ok(Some(0))));
            let n = match (woken, finished) {
                (_, Finished::Done(n)) if n > 0 => n,
                (_, Finished::Done(_)) => {
                    return Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "the bootstrap pipe took no data",
                    ))
                }
                (_, Finished::Failed(err)) => return Err(broken_pipe_kind(err)),
                (Err(err), Finished::Canceled) => return Err(err),
                (Ok(_), Finished::Canceled) => {
                    return Err(io::Error::new(
                        io::ErrorKind::BrokenPipe,
                        "child exited before the bootstrap data was written",
                    ))
                }
            };
            rest = &rest[(n as usize).min(rest.len())..];
        }
        Ok(())
    }

    /// Writes up to `buf.len()` bytes (at most 1 MiB per call), waiting until
    /// the pipe has taken them; returns how many. `BrokenPipe` once the
    /// reading end is closed everywhere.
    pub(crate) fn write(&self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let mut op = Op::new(self.pipe.as_handle())?;
        op.write(buf).map_err(broken_pipe_kind)?;
        match op.finish() {
            Finished::Done(n) => Ok(n as usize),
            Finished::Failed(err) => Err(broken_pipe_kind(err)),
            Finished::Canceled => Err(io::ErrorKind::Interrupted.into()),
        }
    }

    /// Reads what is there, up to `buf.len()` bytes, waiting at most
    /// `timeout` (`None`: forever) for at least one byte.
    ///
    /// `Ok(None)` on timeout; `Ok(Some(0))` at end-of-file, or once `child`
    /// has exited and nothing is left to read (the parent's copy of the
    /// child's end would otherwise keep the pipe open for good).
    pub(crate) fn read_timeout(
        &self,
        child: Option<&Child>,
        buf: &mut [u8],
        timeout: Option<Duration>,
    ) -> io::Result<Option<usize>> {
        if buf.is_empty() {
            return Ok(Some(0));
        }
        let pipe = self.pipe.as_handle();
        let deadline = deadline::deadline_of(timeout);
        loop {
            let ms = ms_until(deadline);
            let mut op = Op::new(pipe)?;
            match op.read(buf) {
                Ok(()) => {}
                Err(err) if is_os_error(&err, ERROR_BROKEN_PIPE) => return Ok(Some(0)),
                Err(err) => return Err(err),
            }
            let mut handles = vec![op.event()];
            handles.extend(child.map(|c| c.process.as_raw_handle()));
            let woken = wait_for_any(&handles, ms);
            let finished = op.finish_if(matches!(woken, Ok(Some(0))));
            match finished {
                Finished::Done(n) => return Ok(Some(n as usize)),
                Finished::Failed(err) if is_os_error(&err, ERROR_BROKEN_PIPE) => {
                    return Ok(Some(0))
                }
                Finished::Failed(err) => return Err(err),
                Finished::Canceled => {}
            }
            match woken? {
                None if deadline::passed(deadline) => return Ok(None),
                None => continue, // a wait clamped to 49.7 days
                // The child exited while the read waited. What it wrote
                // before is still in the pipe: read that first.
                Some(_) if bytes_available(pipe.as_raw_handle())? == 0 => return Ok(Some(0)),
                Some(_) => continue,
            }
        }
    }

    /// Waits for data, then appends at most `max` bytes of it to `v`, without
    /// zero-filling the space first; `Ok(0)` at end-of-file.
    pub(crate) fn read_append(&self, v: &mut Vec<u8>, max: usize) -> io::Result<usize> {
        if max == 0 {
            return Ok(0);
        }
        v.reserve(max);
        let spare = &mut v.spare_capacity_mut()[..max];
        let mut op = Op::new(self.pipe.as_handle())?;
        let n = match op.read_uninit(spare) {
            Err(err) if is_os_error(&err, ERROR_BROKEN_PIPE) => 0,
            Err(err) => return Err(err),
            Ok(()) => match op.finish() {
                Finished::Done(n) => n as usize,
                Finished::Failed(err) if is_os_error(&err, ERROR_BROKEN_PIPE) => 0,
                Finished::Failed(err) => return Err(err),
                Finished::Canceled => return Err(io::ErrorKind::Interrupted.into()),
            },
        };
        drop(op);
        let len = v.len() + n;
        // SAFETY: the read is over (`finish`), and it wrote the first `n`
        // bytes of the spare capacity, which directly follow the current
        // length.
        unsafe { v.set_len(len) };
        Ok(n)
    }

    /// Nothing to do on Windows (see the Unix version): the watched read
    /// is one overlapped read, whose completion and the peer's process
    /// handle are waited on together. Always false.
    pub(crate) fn set_nonblocking_reads(&self) -> bool {
        false
    }

    /// [`read_append`](Self::read_append) that also returns 0 once `peer`
    /// has exited and nothing it wrote is left, even while other processes
    /// (children it passed its end to) keep the pipe open: the read waits on
    /// its completion and the peer's process handle, as
    /// [`read_timeout`](Self::read_timeout) does. There is no bulk lane on
    /// Windows: `bulk` is an error.
    pub(crate) fn read_append_watch(
        &self,
        bulk: bool,
        v: &mut Vec<u8>,
        max: usize,
        peer: &Child,
        _nonblocking: bool,
    ) -> io::Result<usize> {
        if bulk {
            return Err(io::Error::other("no bulk lane"));
        }
        if max == 0 {
            return Ok(0);
        }
        v.reserve(max);
        let pipe = self.pipe.as_handle();
        loop {
            let spare = &mut v.spare_capacity_mut()[..max];
            let mut op = Op::new(pipe)?;
            let n = match op.read_uninit(spare) {
                Err(err) if is_os_error(&err, ERROR_BROKEN_PIPE) => 0,
                Err(err) => return Err(err),
                Ok(()) => {
                    let woken = wait_for_any(&[op.event(), peer.process.as_raw_handle()], INFINITE);
                    match op.finish_if(matches!(woken, Ok(Some(0)))) {
                        Finished::Done(n) => n as usize,
                        Finished::Failed(err) if is_os_error(&err, ERROR_BROKEN_PIPE) => 0,
                        Finished::Failed(err) => return Err(err),
                        Finished::Canceled => {
                            woken?;
                            // The peer exited while the read waited. What it
                            // wrote before is still in the pipe: read that first.
                            if bytes_available(pipe.as_raw_handle())? == 0 {
                                return Ok(0);
                            }
                            continue;
                        }
                    }
                }
            };
            drop(op);
            let len = v.len() + n;
            // SAFETY: the read is over (`finish_if`), and it wrote the first
            // `n` bytes of the spare capacity, which directly follow the
            // current length.
            unsafe { v.set_len(len) };
            return Ok(n);
        }
    }

    /// Wraps an overlapped pipe end, as [`pipe`] makes them (after it
    /// travelled to this process).
    pub(crate) fn from_owned(h: OwnedRaw) -> Channel {
        Channel { pipe: h }
    }

    /// The pipe handle, e.g. for [`wait_any`].
    pub(crate) fn as_raw(&self) -> BorrowedRaw<'_> {
        self.pipe.as_handle()
    }
}

impl Op<'_> {
    /// [`finish`](Op::finish) if `done` (the event fired), otherwise
    /// [`cancel`](Op::cancel).
    fn finish_if(&mut self, done: bool) -> Finished {
        if done {
            self.finish()
        } else {
            self.cancel()
        }
    }
}

/// How many bytes can be read from `pipe` without waiting
/// (`PeekNamedPipe`).
fn bytes_available(pipe: HANDLE) -> io::Result<u32> {
    let mut avail = 0u32;
    // SAFETY: `pipe` is open; no buffer (so nothing is copied), only the
    // total available is asked for.
    let ok = unsafe {
        PeekNamedPipe(
            pipe,
            ptr::null_mut(),
            0,
            ptr::null_mut(),
            &mut avail,
            ptr::null_mut(),
        )
    };
    match cvt(ok) {
        Ok(()) => Ok(avail),
        Err(err) if is_os_error(&err, ERROR_BROKEN_PIPE) => Ok(0),
        Err(err) => Err(err),
    }
}

/// A connected pair of overlapped pipe ends for `Pipe`: with `duplex`, both
/// read and write; otherwise `(reader, writer)`.
pub(crate) fn pipe(duplex: bool) -> io::Result<(Channel, Channel)> {
    let (server, client) = if duplex {
        named_pipe(
            PIPE_ACCESS_DUPLEX,
            GENERIC_READ | GENERIC_WRITE,
            FILE_FLAG_OVERLAPPED,
        )?
    } else {
        // Data flows client to server only.
        named_pipe(PIPE_ACCESS_INBOUND, GENERIC_WRITE, FILE_FLAG_OVERLAPPED)?
    };
    Ok((Channel { pipe: server }, Channel { pipe: client }))
}

/// Waits until at least one of `objs` is ready, at most `timeout` (`None`:
/// forever); returns the indices of all that are ready, empty on timeout.
///
/// A process (or any other waitable object) is ready once signaled. A pipe
/// handle is not a waitable for "readable", so for each pipe a zero-byte
/// overlapped read is started, which completes once data or end-of-file is
/// there without consuming anything (as CPython's
/// `multiprocessing.connection.wait` does), and canceled afterwards. Any
/// number of objects: beyond 64, helper threads share the waiting.
pub(crate) fn wait_any(
    objs: &[BorrowedRaw<'_>],
    timeout: Option<Duration>,
) -> io::Result<Vec<usize>> {
    if objs.is_empty() {
        return match timeout {
            Some(t) => {
                std::thread::sleep(t);
                Ok(Vec::new())
            }
            None => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "waiting forever on nothing",
            )),
        };
    }
    let deadline = deadline::deadline_of(timeout);
    loop {
        let ready = wait_any_once(objs, deadline)?;
        // A wait clamped to 49.7 days may end before the deadline.
        if !ready.is_empty() || deadline.is_none() || deadline::passed(deadline) {
            return Ok(ready);
        }
    }
}

/// One wait of [`wait_any`], at most [`ms_until`] `deadline`.
fn wait_any_once(objs: &[BorrowedRaw<'_>], deadline: Option<Instant>) -> io::Result<Vec<usize>> {
    // Per object: `None` for a waitable object, or the pipe's probe and
    // whether it started (one that could not, on a write-only end or a
    // closed pipe, counts as ready: the caller's read will tell why).
    let mut probes: Vec<Option<(Op<'_>, bool)>> = Vec::with_capacity(objs.len());
    let mut handles = Vec::with_capacity(objs.len());
    for obj in objs {
        let raw = obj.as_raw_handle();
        // SAFETY: `raw` is open (borrowed); for a handle that is not a file
        // this returns FILE_TYPE_UNKNOWN, nothing more.
        if unsafe { GetFileType(raw) } == FILE_TYPE_PIPE {
            let mut op = Op::new(*obj)?;
            let started = op.read(&mut []).is_ok();
            handles.push(op.event());
            probes.push(Some((op, started)));
        } else {
            handles.push(raw);
            probes.push(None);
        }
    }
    let ready_now = probes.iter().flatten().any(|(_, started)| !started);
    let ms = if ready_now { 0 } else { ms_until(deadline) };
    let woken = wait_for_any(&handles, ms);
    // Collect every ready object, not just the first, and stop the probes.
    let mut ready = Vec::new();
    for (i, probe) in probes.iter_mut().enumerate() {
        let is_ready = match probe {
            None => is_signaled(handles[i]),
            Some((_, false)) => true,
            Some((op, true)) => !matches!(op.cancel(), Finished::Canceled),
        };
        if is_ready {
            ready.push(i);
        }
    }
    woken?;
    Ok(ready)
}

/// A waitable handle on any process by pid (`SYNCHRONIZE`): signaled once
/// it has exited.
#[cfg(feature = "test-hooks")]
pub(crate) fn watch_process(pid: u32) -> io::Result<OwnedRaw> {
    // SAFETY: plain call; the result is checked by `owned_or_null`.
    let raw = unsafe {
        OpenProcess(
            PROCESS_SYNCHRONIZE
                | windows_sys::Win32::System::Threading::PROCESS_QUERY_LIMITED_INFORMATION,
            FALSE,
            pid,
        )
    };
    // SAFETY: fresh return value of `OpenProcess`, owned by nobody else.
    unsafe { owned_or_null(raw) }
}

// ---------------------------------------------------------------------------
// Child side
// ---------------------------------------------------------------------------

/// Takes the child's end of the bootstrap channel out of the parent named in
/// `t` (run in the child).
///
/// Opens the parent with `PROCESS_DUP_HANDLE | SYNCHRONIZE` and duplicates
/// the handle out of it with the same access, leaving the parent's copy in
/// place (no `DUPLICATE_CLOSE_SOURCE`; module docs). The parent's process
/// handle is kept: it can serve as the child's parent-death sentinel. The
/// parent's ack event is duplicated too; [`ChildChannel::recv_header`]
/// sets it once the header came through our copy, so that the parent can
/// close its own (`KEPT_PEERS`).
///
/// If the parent died before this and its pid was reused, we open a stranger:
/// the duplication then fails or yields some unrelated handle, and the
/// bootstrap header's checks reject what it reads. (The "ack" would then
/// be set only if a whole header came through that handle.)
pub(crate) fn open_bootstrap(t: BootToken) -> io::Result<ChildChannel> {
    let (source, ack) = unpack_boot_handles(t.handle)?;
    // SAFETY: plain call; the result is checked by `owned_or_null`.
    let raw = unsafe {
        OpenProcess(
            PROCESS_DUP_HANDLE | PROCESS_SYNCHRONIZE,
            FALSE,
            t.parent_pid,
        )
    };
    // SAFETY: fresh return value of `OpenProcess`, owned by nobody else.
    let parent = unsafe { owned_or_null(raw) }?;
    let pipe = duplicate_from(&parent, source)?;
    let ack = ack.map(|ack| duplicate_from(&parent, ack)).transpose()?;
    Ok(ChildChannel {
        pipe,
        parent,
        ack,
        taken: HashSet::new(),
    })
}

/// Duplicates the handle whose value in `source` (a process handle with
/// `PROCESS_DUP_HANDLE`) is `h` into this process, with the same access.
fn duplicate_from(source: &OwnedHandle, h: HANDLE) -> io::Result<OwnedHandle> {
    // SAFETY: plain call; returns the pseudo handle of this process, which
    // needs no closing.
    let me = unsafe { GetCurrentProcess() };
    let mut out: HANDLE = ptr::null_mut();
    // SAFETY: `source` is open with PROCESS_DUP_HANDLE; `h` is only a value
    // in its table, which the OS checks there; `out` is a valid place for
    // the result.
    let ok = unsafe {
        DuplicateHandle(
            source.as_raw_handle(),
            h,
            me,
            &mut out,
            0,
            FALSE,
            DUPLICATE_SAME_ACCESS,
        )
    };
    cvt(ok)?;
    // SAFETY: on success `out` is a new handle in this process, ours alone.
    Ok(unsafe { OwnedHandle::from_raw_handle(out) })
}

/// Child side, after the bootstrap: nothing to do on Windows. Dying with the
/// parent is arranged by the parent, which put the child in a job object
/// with `KILL_ON_JOB_CLOSE` before it ran ([`spawn`]).
pub(crate) fn die_with_parent(_parent_pid: u32) -> io::Result<()> {
    Ok(())
}

/// The child's end of the bootstrap channel: a synchronous pipe handle.
///
/// Caveat: on a synchronous handle the system runs one operation at a time
/// (the file object is locked for the call), so a thread blocked in
/// [`read`](Self::read) holds up a [`write`](Self::write) from another thread
/// until the read returns. Read and write from one thread, or alternate.
pub(crate) struct ChildChannel {
    /// Our end of the pipe (synchronous).
    pipe: OwnedHandle,
    /// The parent process (`PROCESS_DUP_HANDLE | SYNCHRONIZE`); signaled
    /// when the parent exits.
    parent: OwnedHandle,
    /// The parent's ack event ([`Peer::ack`]), until it is set.
    ack: Option<OwnedHandle>,
    /// Tokens already turned into handles by `take_handle`.
    taken: HashSet<u64>,
}

impl ChildChannel {
    /// The parent process's handle: waitable, signaled once the parent has
    /// exited (a parent-death sentinel).
    #[allow(dead_code, reason = "not used by the layers above yet")]
    pub(crate) fn parent(&self) -> BorrowedRaw<'_> {
        self.parent.as_handle()
    }

    /// Reads exactly `buf.len()` bytes; `UnexpectedEof` if the parent's end
    /// closes before that.
    pub(crate) fn recv_header(&mut self, buf: &mut [u8]) -> io::Result<()> {
        let mut filled = 0;
        while filled < buf.len() {
            match self.read(&mut buf[filled..])? {
                0 => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!(
                            "the bootstrap pipe closed after {filled} of {} header bytes",
                            buf.len()
                        ),
                    ))
                }
                n => filled += n,
            }
        }
        if let Some(ack) = self.ack.take() {
            // Our copy works: the parent may close its own. If this fails,
            // the parent keeps it until we exit, which costs nothing more.
            // SAFETY: `ack` is open, a copy of the parent's event with its
            // access (EVENT_ALL_ACCESS, which includes EVENT_MODIFY_STATE).
            unsafe { SetEvent(ack.as_raw_handle()) };
        }
        Ok(())
    }

    /// Reads what is available, up to `buf.len()` bytes, waiting for at least
    /// one; `Ok(0)` at end-of-file (the parent's end closed).
    pub(crate) fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let len = u32::try_from(buf.len()).unwrap_or(u32::MAX);
        let mut n = 0u32;
        // SAFETY: `pipe` is our open, synchronous handle; `buf` is valid for
        // `len` bytes and `n` for the count, for the whole (blocking) call.
        let ok = unsafe {
            ReadFile(
                self.pipe.as_raw_handle(),
                buf.as_mut_ptr(),
                len,
                &mut n,
                ptr::null_mut(),
            )
        };
        match cvt(ok) {
            Ok(()) => Ok(n as usize),
            Err(err) if is_os_error(&err, ERROR_BROKEN_PIPE) => Ok(0),
            Err(err) => Err(err),
        }
    }

    /// Writes up to `buf.len()` bytes (at most 1 MiB per call), waiting until
    /// the pipe has taken them; returns how many.
    pub(crate) fn write(&self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let len = buf.len().min(MAX_WRITE) as u32;
        let mut n = 0u32;
        // SAFETY: `pipe` is our open, synchronous handle; `buf` is valid for
        // `len` bytes and `n` for the count, for the whole (blocking) call.
        let ok = unsafe {
            WriteFile(
                self.pipe.as_raw_handle(),
                buf.as_ptr(),
                len,
                &mut n,
                ptr::null_mut(),
            )
        };
        cvt(ok).map_err(broken_pipe_kind)?;
        Ok(n as usize)
    }

    /// Takes ownership of the handle the parent put into this process with
    /// `HandleTransfer::add`; `token` is its value here.
    ///
    /// `InvalidInput` for a token that is not shaped like a handle, was taken
    /// before, names this channel's own handles, or is not an open handle
    /// here (`GetHandleInformation` fails), so a bad token can never make
    /// two owners of one handle.
    pub(crate) fn take_handle(&mut self, token: u64) -> io::Result<OwnedRaw> {
        let raw = token_to_handle(token)?;
        let invalid = |why: &str| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("handle token {token:#x} {why}"),
            )
        };
        if self.taken.contains(&token) {
            return Err(invalid("was already taken"));
        }
        let ack = self.ack.as_ref().map(AsRawHandle::as_raw_handle);
        if raw == self.pipe.as_raw_handle()
            || raw == self.parent.as_raw_handle()
            || Some(raw) == ack
        {
            return Err(invalid("names a handle of the bootstrap channel"));
        }
        let mut flags = 0u32;
        // SAFETY: only reads the flags of a handle-table entry; a value that
        // is not an open handle makes it fail, nothing more.
        if unsafe { GetHandleInformation(raw, &mut flags) } == 0 {
            return Err(invalid("is not an open handle in this process"));
        }
        self.taken.insert(token);
        // SAFETY: the handle is open, was put here for us by the parent, and
        // `taken` makes sure it is wrapped only once.
        Ok(unsafe { OwnedHandle::from_raw_handle(raw) })
    }
}

// ---------------------------------------------------------------------------
// Diagnostics
// ---------------------------------------------------------------------------

/// The values 4..=65536 that name an open handle in this process.
///
/// Probed one by one with `GetHandleInformation`, which fails for a value
/// that is not open. `GetProcessHandleCount` would be the obvious call, but
/// Wine 8 returns TRUE and a count of 0 (shared/windows/README.md). Handle
/// values above 65536 (a process with very many handles) are not seen; for
/// leak and isolation tests that is plenty.
#[cfg(feature = "test-hooks")]
fn open_handles() -> impl Iterator<Item = HANDLE> {
    (4..=MAX_PROBED_HANDLE)
        .step_by(4)
        .map(|v| v as HANDLE)
        .filter(|&h| {
            let mut flags = 0u32;
            // SAFETY: only reads the flags of a handle-table entry; a value
            // that is not open makes it fail, nothing more.
            unsafe { GetHandleInformation(h, &mut flags) != 0 }
        })
}

/// How many handles this process has open (values up to 65536), for leak
/// tests. See [`open_handles`] for why it probes instead of asking
/// `GetProcessHandleCount`.
#[cfg(feature = "test-hooks")]
pub(crate) fn open_handle_count() -> io::Result<usize> {
    Ok(open_handles().count())
}

/// The open pipe handles of this process other than its standard handles,
/// for isolation tests (what a child got besides its bootstrap pipe).
///
/// Caveat: `GetFileType` queries the handle's file object, which for a
/// synchronous handle waits behind an operation another thread has in
/// progress on it; don't call this while another thread is blocked reading
/// a synchronous pipe.
#[cfg(feature = "test-hooks")]
pub(crate) fn open_ipc_handles() -> io::Result<Vec<u64>> {
    // `as_raw_handle` on the std streams asks `GetStdHandle`.
    let std_handles = [
        io::stdin().as_raw_handle(),
        io::stdout().as_raw_handle(),
        io::stderr().as_raw_handle(),
    ];
    Ok(open_handles()
        .filter(|h| !std_handles.contains(h))
        .filter(|&h| {
            // SAFETY: `h` was just seen open; for a handle that is not a
            // file this returns FILE_TYPE_UNKNOWN, nothing more.
            unsafe { GetFileType(h) == FILE_TYPE_PIPE }
        })
        .map(handle_to_token)
        .collect())
}

/// `Child` and `Channel` are shared between threads by the layers above.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Child>();
    assert_send_sync::<Channel>();
};

#[cfg(test)]
mod tests {
    use super::*;

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
