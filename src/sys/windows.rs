//! Windows: `CreateProcessW`, a named pipe, `DuplicateHandle`,
//! `WaitForSingleObject`, `TerminateProcess` (windows-sys).
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
//!   ([`open_bootstrap`]).
//! * **The parent keeps its copy of the child's end** until the child has
//!   been reaped ([`Child::wait`]) or [`Child::release_bootstrap_peer`] is
//!   called. The child does not steal it with `DUPLICATE_CLOSE_SOURCE`: a
//!   child killed before it got that far would leak the handle in the parent
//!   for good (CPython bpo-33929 moved away from stealing for this reason).
//!   The price: while the parent holds that copy, the pipe's client side stays
//!   open, so a write into a full pipe does not fail when the child dies, and a
//!   read on [`Channel`] does not see end-of-file either. [`Channel::send_bootstrap`]
//!   therefore waits on the write *and* the child's process handle; callers
//!   that read from the [`Channel`] for a child's answer must release the peer
//!   first (e.g. once the child has acknowledged the bootstrap), or watch the
//!   process handle themselves.
//! * **The channel is a named pipe, not `CreatePipe`,** because only named
//!   pipes support overlapped I/O ("Anonymous Pipe Operations" on MSDN:
//!   asynchronous read and write operations are not supported by anonymous
//!   pipes), and overlapped I/O is what lets [`Channel::send_bootstrap`] wait
//!   for "written or child gone" without a helper thread. Only the parent's
//!   end is overlapped; the child's end is a plain synchronous handle that
//!   any Windows code can read and write.
//! * **No zombies.** A process handle keeps the exit code readable, and the
//!   pid cannot be reused while we hold it; dropping [`Child`] just closes
//!   handles. The process handle, never the pid, is the authority to wait and
//!   to terminate.
//!
//! Under Wine 8 (our Linux test bed) a few calls differ from Windows: see the
//! notes at [`Child::terminate`] and [`open_handle_count`].

use std::collections::hash_map::RandomState;
use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::mem::size_of;
use std::os::windows::ffi::OsStrExt;
use std::os::windows::io::{
    AsHandle, AsRawHandle, BorrowedHandle, FromRawHandle, HandleOrInvalid, HandleOrNull,
    OwnedHandle,
};
use std::ptr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

use windows_sys::core::BOOL;
use windows_sys::Win32::Foundation::{
    DuplicateHandle, GetHandleInformation, DUPLICATE_SAME_ACCESS, ERROR_ACCESS_DENIED,
    ERROR_BROKEN_PIPE, ERROR_IO_PENDING, ERROR_NO_DATA, FALSE, GENERIC_READ, GENERIC_WRITE, HANDLE,
    TRUE, WAIT_FAILED, WAIT_OBJECT_0, WAIT_TIMEOUT,
};
use windows_sys::Win32::Storage::FileSystem::{
    CreateFileW, GetFileType, ReadFile, WriteFile, FILE_FLAG_FIRST_PIPE_INSTANCE,
    FILE_FLAG_OVERLAPPED, FILE_TYPE_PIPE, OPEN_EXISTING, PIPE_ACCESS_DUPLEX,
};
use windows_sys::Win32::System::Pipes::{
    CreateNamedPipeW, PIPE_READMODE_BYTE, PIPE_REJECT_REMOTE_CLIENTS, PIPE_TYPE_BYTE, PIPE_WAIT,
};
use windows_sys::Win32::System::Threading::{
    CreateEventW, CreateProcessW, GetCurrentProcess, GetExitCodeProcess, OpenProcess,
    TerminateProcess, WaitForMultipleObjects, WaitForSingleObject, CREATE_NO_WINDOW,
    CREATE_UNICODE_ENVIRONMENT, INFINITE, PROCESS_DUP_HANDLE, PROCESS_INFORMATION,
    PROCESS_SYNCHRONIZE, STARTUPINFOW,
};
use windows_sys::Win32::System::IO::{CancelIoEx, GetOverlappedResult, OVERLAPPED};

use super::{BootToken, RawStatus, SpawnRequest, StdioMode};

/// An owned OS handle.
pub(crate) type OwnedRaw = OwnedHandle;
/// A borrowed OS handle.
pub(crate) type BorrowedRaw<'a> = BorrowedHandle<'a>;

/// The exit code [`Child::terminate`] gives a process: CPython's
/// `_winapi`-based `TERMINATE` (`0x10000`), so that "terminated by us" can be
/// told apart from the small codes programs exit with.
const TERMINATE_CODE: u32 = 0x10000;

/// The [`RawStatus`] of a process ended by [`Child::terminate`].
pub(crate) const TERMINATED: RawStatus = RawStatus::Exited(TERMINATE_CODE as i32);

/// In- and out-buffer size of the bootstrap pipe, in bytes (a hint to the
/// system; "CreateNamedPipeW" on MSDN).
const PIPE_BUFFER: u32 = 64 * 1024;

/// The most one `WriteFile` call is given. A write to a byte-mode pipe in wait
/// mode completes only when all of it has been taken, and a pending write
/// holds system memory for its data, so very large single writes are split.
/// Small enough to be harmless, large enough that the per-call cost vanishes
/// next to the copy.
const MAX_WRITE: usize = 1 << 20;

/// The highest handle value [`open_handle_count`] and [`open_ipc_handles`]
/// probe.
const MAX_PROBED_HANDLE: usize = 65536;

/// Process creation flags for the child.
///
/// `CREATE_NO_WINDOW`: a console child gets no console window, so none
/// flashes up. `CREATE_UNICODE_ENVIRONMENT`: harmless with the inherited
/// environment (`lpEnvironment = NULL`), required once one is passed.
const CREATION_FLAGS: u32 = CREATE_UNICODE_ENVIRONMENT;

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
/// `NULL` (`OpenProcess`, `CreateEventW`); on failure, the thread's last
/// error.
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
/// 32 bits (64-bit Windows keeps handle values 32-bit for 32-bit
/// interoperability, "Interprocess Communication Between 32-bit and 64-bit
/// Applications" on MSDN). This also keeps out pseudo handles such as
/// `GetCurrentProcess()`'s `-1`.
fn token_to_handle(token: u64) -> io::Result<HANDLE> {
    if token == 0 || token % 4 != 0 || token > u64::from(u32::MAX) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{token:#x} is not a handle value"),
        ));
    }
    // The check above bounds `token` to 32 bits, which fit in `usize` here.
    Ok(token as usize as HANDLE)
}

/// A new manual-reset event, not signaled, for one `OVERLAPPED` operation.
///
/// Manual reset because `GetOverlappedResult` waits on it and does not
/// expect it to reset itself ("GetOverlappedResult" on MSDN); `ReadFile` and
/// `WriteFile` reset it when an operation starts, so it can be reused for a
/// sequence of operations.
fn new_event() -> io::Result<OwnedHandle> {
    // SAFETY: no security attributes, no name; the return value is checked
    // by `owned_or_null`.
    let raw = unsafe { CreateEventW(ptr::null(), TRUE, FALSE, ptr::null()) };
    // SAFETY: fresh return value of `CreateEventW`, owned by nobody else.
    unsafe { owned_or_null(raw) }
}

/// An `OVERLAPPED` for a new operation, signaling `event` when done.
fn overlapped(event: &OwnedHandle) -> OVERLAPPED {
    OVERLAPPED {
        hEvent: event.as_raw_handle(),
        ..OVERLAPPED::default()
    }
}

/// Milliseconds for a Win32 wait: `None` waits forever; a duration is rounded
/// up to whole milliseconds (never wake up before it has passed); one too
/// long for a `u32` (or equal to `INFINITE`, `u32::MAX`) waits forever.
fn timeout_ms(timeout: Option<Duration>) -> u32 {
    match timeout {
        None => INFINITE,
        Some(d) => u32::try_from(d.as_nanos().div_ceil(1_000_000))
            .ok()
            .filter(|&ms| ms != INFINITE)
            .unwrap_or(INFINITE),
    }
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
/// The program name is parsed by different rules (everything up to the next
/// `"`, no escapes), so it is quoted as is and may not contain `"` — which
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

/// Creates the bootstrap pipe: the parent's end (the overlapped server) and
/// the child's end (a synchronous client), both not inheritable (no security
/// attributes).
///
/// `FILE_FLAG_FIRST_PIPE_INSTANCE` makes creation fail if anyone already
/// made a pipe of that name, and one instance only means nobody can add
/// another; `PIPE_REJECT_REMOTE_CLIENTS` keeps it local. If some other
/// process connects between the two calls, our `CreateFileW` fails with
/// `ERROR_PIPE_BUSY` and so does the spawn: nobody else can end up as the
/// child's peer.
///
/// No `ConnectNamedPipe`: the client connected before it would be called,
/// and "ConnectNamedPipe" on MSDN says that in this case "there is a good
/// connection between client and server".
fn bootstrap_pipe() -> io::Result<(OwnedHandle, OwnedHandle)> {
    let name = to_wide(OsStr::new(&pipe_name()))?;
    // SAFETY: `name` is NUL-terminated and outlives the call; no security
    // attributes (so not inheritable); the result is checked below.
    let raw = unsafe {
        CreateNamedPipeW(
            name.as_ptr(),
            PIPE_ACCESS_DUPLEX | FILE_FLAG_OVERLAPPED | FILE_FLAG_FIRST_PIPE_INSTANCE,
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
    // SAFETY: as above; no sharing, no security attributes, flags 0 = a
    // synchronous handle; the result is checked below.
    let raw = unsafe {
        CreateFileW(
            name.as_ptr(),
            GENERIC_READ | GENERIC_WRITE,
            0,
            ptr::null(),
            OPEN_EXISTING,
            0,
            ptr::null_mut(),
        )
    };
    // SAFETY: fresh return value of `CreateFileW`, owned by nobody else.
    let client = unsafe { owned_or_invalid(raw) }?;
    Ok((server, client))
}

// ---------------------------------------------------------------------------
// Parent side
// ---------------------------------------------------------------------------

/// Starts `req.exe` with the bootstrap channel ready for it to take.
///
/// The child gets no handles at all (`bInheritHandles = FALSE`); its
/// arguments, built by `req.args`, carry where its end of the channel is.
/// On error every handle made so far is closed (they are owned from the
/// moment they exist) and no process is left running: nothing can fail
/// after `CreateProcessW` succeeded.
pub(crate) fn spawn(req: &SpawnRequest<'_>) -> io::Result<(Child, Channel)> {
    let (server, client) = bootstrap_pipe()?;
    let token = BootToken {
        parent_pid: std::process::id(),
        handle: handle_to_token(client.as_raw_handle()),
    };
    let args = (req.args)(token);
    let app = to_wide(req.exe.as_os_str())?;
    let mut cmd = make_command_line(req.exe.as_os_str(), &args)?;

    // TODO: `StdioMode::Null` is treated as `Inherit` for now. Doing it
    // right needs the NUL device in `STARTUPINFOW` with
    // `STARTF_USESTDHANDLES`, which only works with inheritance; that means
    // `bInheritHandles = TRUE` restricted by `PROC_THREAD_ATTRIBUTE_HANDLE_LIST`.
    let _stdio: [StdioMode; 3] = req.stdio;
    // Without `STARTF_USESTDHANDLES` and with `bInheritHandles = FALSE`,
    // a console child attached to the parent's console gets the parent's
    // standard handles duplicated into it ("Inherit").
    let startup = STARTUPINFOW {
        cb: size_of::<STARTUPINFOW>() as u32,
        ..STARTUPINFOW::default()
    };
    let mut info = PROCESS_INFORMATION::default();
    // SAFETY: `app` is NUL-terminated; `cmd` is a NUL-terminated, writable
    // buffer (CreateProcessW may modify it); both outlive the call. No
    // security attributes, no inheritance, inherited environment and
    // directory; `startup` and `info` are valid for the call.
    let ok = unsafe {
        CreateProcessW(
            app.as_ptr(),
            cmd.as_mut_ptr(),
            ptr::null(),
            ptr::null(),
            FALSE,
            CREATION_FLAGS,
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
    // alone; we have no use for it, so it is closed at once.
    drop(unsafe { OwnedHandle::from_raw_handle(info.hThread) });
    let child = Child {
        process,
        pid: info.dwProcessId,
        bootstrap_peer: Mutex::new(Some(client)),
        status: OnceLock::new(),
    };
    Ok((child, Channel { pipe: server }))
}

/// A started child process.
///
/// Owns the process handle (which keeps the pid from being reused and the
/// exit code readable) and, until the child is reaped, the parent's copy of
/// the child's end of the bootstrap pipe. Dropping it closes both; the
/// process itself keeps running.
pub(crate) struct Child {
    /// The process handle from `CreateProcessW` (all access).
    process: OwnedHandle,
    /// The process id, for display and for the child's command line only.
    pid: u32,
    /// The parent's copy of the child's end of the bootstrap pipe: the value
    /// the child duplicates out of us, so it must stay open until the child
    /// has done that or is gone (module docs).
    bootstrap_peer: Mutex<Option<OwnedHandle>>,
    /// The exit status, once the OS has confirmed the exit.
    status: OnceLock<RawStatus>,
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
        // SAFETY: `handle` is our open process handle, which has SYNCHRONIZE.
        let woken = unsafe { WaitForSingleObject(handle, timeout_ms(timeout)) };
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
        // is final (never the STILL_ACTIVE placeholder).
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
    /// code stays, so the same outcome.)
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
        if is_os_error(&err, ERROR_ACCESS_DENIED) {
            // SAFETY: as above; a zero timeout only polls.
            if unsafe { WaitForSingleObject(handle, 0) } == WAIT_OBJECT_0 {
                return Ok(());
            }
        }
        Err(err)
    }

    /// Same as [`terminate`](Self::terminate): Windows has no gentler and
    /// no harder way (CPython: `kill = terminate`).
    pub(crate) fn kill(&self) -> io::Result<()> {
        self.terminate()
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

/// Handles made available to a child while it is spawned.
///
/// On Windows a handle is duplicated straight into the child's handle table
/// by [`add`](Self::add); nothing is left to do at send time.
#[derive(Debug, Default)]
pub(crate) struct HandleTransfer;

impl HandleTransfer {
    /// Duplicates `h` into `child` (same access, not inheritable) and
    /// returns its value there: the token for `ChildChannel::take_handle`.
    ///
    /// If the child never takes it, the duplicate is closed when the child
    /// exits, like every handle of a process.
    pub(crate) fn add(&mut self, child: &Child, h: BorrowedRaw<'_>) -> io::Result<u64> {
        let mut out: HANDLE = ptr::null_mut();
        // SAFETY: plain call, returns the pseudo handle of this process,
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

/// The parent's end of the bootstrap channel: the server end of a named
/// pipe, opened for overlapped I/O. Each operation has its own `OVERLAPPED`
/// and event, so several threads may read and write at once.
pub(crate) struct Channel {
    /// The pipe's server end (`FILE_FLAG_OVERLAPPED`).
    pipe: OwnedHandle,
}

impl Channel {
    /// Writes all of `data` to the child, unless the child exits first:
    /// then an error of kind `BrokenPipe`. Never hangs on a dead child.
    ///
    /// Each write waits on its completion event *and* the child's process
    /// handle (`WaitForMultipleObjects`). The parent still holds the child's
    /// end ([`Child::release_bootstrap_peer`]), so a dead child would not
    /// make the write fail: without the process handle it would wait
    /// forever once the pipe buffer is full. If the write completes and the
    /// child exits at the same time, the write wins (the lower index): the
    /// data was taken, as a pipe write to a child that dies a moment later
    /// would be on Unix. The handles in `transfer` are already in the
    /// child.
    pub(crate) fn send_bootstrap(
        &self,
        child: &Child,
        data: &[u8],
        _transfer: HandleTransfer,
    ) -> io::Result<()> {
        let pipe = self.pipe.as_raw_handle();
        let event = new_event()?;
        let mut rest = data;
        while !rest.is_empty() {
            let len = rest.len().min(MAX_WRITE);
            let mut ov = overlapped(&event);
            // SAFETY: `rest[..len]` and `ov` stay where they are until the
            // operation is over: every path below waits for its completion
            // (GetOverlappedResult with bWait = TRUE) before leaving this
            // iteration. No byte count pointer with OVERLAPPED, as MSDN
            // advises ("WriteFile").
            let ok =
                unsafe { WriteFile(pipe, rest.as_ptr(), len as u32, ptr::null_mut(), &mut ov) };
            if ok == 0 {
                let err = io::Error::last_os_error();
                if !is_os_error(&err, ERROR_IO_PENDING) {
                    // Not started, nothing pending.
                    return Err(broken_pipe_kind(err));
                }
            }
            let handles = [event.as_raw_handle(), child.process.as_raw_handle()];
            // SAFETY: both handles are open for the whole call and have
            // SYNCHRONIZE; the array outlives the call.
            let woken = unsafe { WaitForMultipleObjects(2, handles.as_ptr(), FALSE, INFINITE) };
            if woken != WAIT_OBJECT_0 {
                let err = if woken == WAIT_OBJECT_0 + 1 {
                    io::Error::new(
                        io::ErrorKind::BrokenPipe,
                        "child exited before the bootstrap data was written",
                    )
                } else {
                    io::Error::last_os_error()
                };
                cancel_and_wait(pipe, &ov);
                return Err(err);
            }
            let mut n = 0u32;
            // SAFETY: `ov` belongs to the write just started on `pipe`, which
            // has completed (its event is set), so this does not block.
            cvt(unsafe { GetOverlappedResult(pipe, &ov, &mut n, TRUE) })
                .map_err(broken_pipe_kind)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "the bootstrap pipe took no data",
                ));
            }
            rest = &rest[(n as usize).min(rest.len())..];
        }
        Ok(())
    }

    /// Reads what is available, up to `buf.len()` bytes, waiting for at least
    /// one; `Ok(0)` at end-of-file (the child's end is closed everywhere).
    pub(crate) fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let len = u32::try_from(buf.len()).unwrap_or(u32::MAX);
        let result = self.overlapped_io(|pipe, ov| {
            // SAFETY: `buf` is valid for `len` bytes and, like `ov`, outlives
            // the operation (`overlapped_io` waits for its completion).
            unsafe { ReadFile(pipe, buf.as_mut_ptr(), len, ptr::null_mut(), ov) }
        });
        match result {
            Ok(n) => Ok(n as usize),
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
        let n = self
            .overlapped_io(|pipe, ov| {
                // SAFETY: `buf` is valid for `len` bytes and, like `ov`,
                // outlives the operation (`overlapped_io` waits for its
                // completion).
                unsafe { WriteFile(pipe, buf.as_ptr(), len, ptr::null_mut(), ov) }
            })
            .map_err(broken_pipe_kind)?;
        Ok(n as usize)
    }

    /// Runs one overlapped operation to completion: `start` begins it on the
    /// pipe with the given `OVERLAPPED`; then we wait for the result.
    fn overlapped_io(
        &self,
        start: impl FnOnce(HANDLE, *mut OVERLAPPED) -> BOOL,
    ) -> io::Result<u32> {
        let pipe = self.pipe.as_raw_handle();
        let event = new_event()?;
        let mut ov = overlapped(&event);
        if start(pipe, &mut ov) == 0 {
            let err = io::Error::last_os_error();
            if !is_os_error(&err, ERROR_IO_PENDING) {
                // Not started, nothing pending.
                return Err(err);
            }
        }
        let mut n = 0u32;
        // SAFETY: `ov` belongs to the operation just started on `pipe`; with
        // bWait = TRUE this returns only once it is complete, so `ov`, its
        // event and the caller's buffer outlive it.
        cvt(unsafe { GetOverlappedResult(pipe, &ov, &mut n, TRUE) })?;
        Ok(n)
    }
}

/// Cancels the overlapped operation `ov` on `pipe` and waits until it is
/// over, so that its buffer and `ov` may go. The outcome does not matter:
/// the operation may have completed meanwhile (then `CancelIoEx` fails with
/// `ERROR_NOT_FOUND`).
fn cancel_and_wait(pipe: HANDLE, ov: &OVERLAPPED) {
    // SAFETY: cancels only the request identified by `ov` on our open `pipe`.
    unsafe { CancelIoEx(pipe, ov) };
    let mut n = 0u32;
    // SAFETY: `ov` belongs to an operation on `pipe`; bWait = TRUE returns
    // once it is over (completed or canceled: "CancelIoEx" on MSDN says to
    // wait for the completion this way).
    unsafe { GetOverlappedResult(pipe, ov, &mut n, TRUE) };
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
/// handle is kept: it doubles as the child's parent-death sentinel.
///
/// If the parent died before this and its pid was reused, we open a stranger:
/// the duplication then fails or yields some unrelated handle, and the
/// bootstrap header's checks reject what it reads.
pub(crate) fn open_bootstrap(t: BootToken) -> io::Result<ChildChannel> {
    let source = token_to_handle(t.handle)?;
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
    // SAFETY: plain call, returns the pseudo handle of this process, which
    // needs no closing.
    let me = unsafe { GetCurrentProcess() };
    let mut out: HANDLE = ptr::null_mut();
    // SAFETY: `parent` is open with PROCESS_DUP_HANDLE; `source` is only a
    // value in the parent's table, which the OS checks there; `out` is a
    // valid place for the result.
    let ok = unsafe {
        DuplicateHandle(
            parent.as_raw_handle(),
            source,
            me,
            &mut out,
            0,
            FALSE,
            DUPLICATE_SAME_ACCESS,
        )
    };
    cvt(ok)?;
    // SAFETY: on success `out` is a new handle in this process, ours alone.
    let pipe = unsafe { OwnedHandle::from_raw_handle(out) };
    Ok(ChildChannel {
        pipe,
        parent,
        taken: HashSet::new(),
    })
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
    /// Tokens already turned into handles by `take_handle`.
    taken: HashSet<u64>,
}

impl ChildChannel {
    /// The parent process's handle: waitable, signaled once the parent has
    /// exited (the parent-death sentinel).
    #[allow(dead_code, reason = "the parent-death sentinel is not wired up yet")]
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
    /// here (`GetHandleInformation` fails) — so a bad token can never make
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
        if raw == self.pipe.as_raw_handle() || raw == self.parent.as_raw_handle() {
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
/// Wine 8 returns TRUE and a count of 0 (shared/windows/README.md).
/// Handle values above 65536 (a process with very many handles) are not
/// seen; for leak tests that is plenty.
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
pub(crate) fn open_ipc_handles() -> io::Result<Vec<u64>> {
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
