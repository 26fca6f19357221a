//! The bootstrap token's handle pair, and the child's side of the
//! bootstrap channel (run in the child).

use std::collections::HashSet;
use std::io;
use std::os::windows::io::{AsHandle, AsRawHandle, FromRawHandle, OwnedHandle};
use std::ptr;

use windows_sys::Win32::Foundation::{
    DuplicateHandle, GetHandleInformation, DUPLICATE_SAME_ACCESS, ERROR_BROKEN_PIPE, FALSE, HANDLE,
};
use windows_sys::Win32::Storage::FileSystem::{ReadFile, WriteFile};
use windows_sys::Win32::System::Threading::{
    GetCurrentProcess, OpenProcess, SetEvent, PROCESS_DUP_HANDLE, PROCESS_SYNCHRONIZE,
};

use super::{
    broken_pipe_kind, cvt, handle_to_token, is_os_error, owned_or_null, token_to_handle,
    BorrowedRaw, OwnedRaw, MAX_WRITE,
};
use crate::sys::BootToken;

/// The bootstrap token's handle field: the value of the child's end of the
/// pipe in the low 32 bits, that of the [`Peer::ack`](super::child::Peer::ack) event in the high 32
/// bits. Handle values are 32-bit significant (see [`token_to_handle`]),
/// so both fit; a value that does not is refused rather than cut.
pub(super) fn pack_boot_handles(pipe: HANDLE, ack: HANDLE) -> io::Result<u64> {
    let (pipe, ack) = (handle_to_token(pipe), handle_to_token(ack));
    if pipe > u64::from(u32::MAX) || ack > u64::from(u32::MAX) {
        return Err(io::Error::other("a handle value does not fit in 32 bits"));
    }
    Ok(pipe | ack << 32)
}

/// The other way round: the pipe's handle value and the ack event's, if
/// any (high bits 0: none, as on a hand-written command line).
pub(super) fn unpack_boot_handles(token: u64) -> io::Result<(HANDLE, Option<HANDLE>)> {
    let pipe = token_to_handle(token & u64::from(u32::MAX))?;
    let ack = match token >> 32 {
        0 => None,
        v => Some(token_to_handle(v)?),
    };
    Ok((pipe, ack))
}

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
pub(super) fn duplicate_from(source: &OwnedHandle, h: HANDLE) -> io::Result<OwnedHandle> {
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
/// with `KILL_ON_JOB_CLOSE` before it ran ([`spawn`](super::spawn())).
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
    /// The parent's ack event ([`Peer::ack`](super::child::Peer::ack)), until it is set.
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

/// Child side: makes `h` this process's stdin (`which == 0`), stdout
/// (`1`) or stderr (`2`) with `SetStdHandle`, which Rust's
/// `std::io::stdout`/`stderr` consult on every write (C runtime streams
/// opened at startup don't follow).
pub(crate) fn set_std_handle(which: u8, h: OwnedRaw) -> io::Result<()> {
    use std::os::windows::io::{AsRawHandle, IntoRawHandle};
    use windows_sys::Win32::System::Console::{
        SetStdHandle, STD_ERROR_HANDLE, STD_INPUT_HANDLE, STD_OUTPUT_HANDLE,
    };
    let id = match which {
        0 => STD_INPUT_HANDLE,
        1 => STD_OUTPUT_HANDLE,
        _ => STD_ERROR_HANDLE,
    };
    // SAFETY: `h` is an open handle we own; on success SetStdHandle keeps
    // it as the process's standard handle for the rest of its life (we
    // give up ownership below); on failure `h` still closes it.
    if unsafe { SetStdHandle(id, h.as_raw_handle()) } == 0 {
        return Err(io::Error::last_os_error());
    }
    let _ = h.into_raw_handle();
    Ok(())
}
