//! Handles inside a `Connection` message. Windows has no way to send a
//! handle down a pipe: the sender duplicates each one into the receiving
//! process (`DuplicateHandle`, as at spawn), and the frame carries the
//! values they have there.
//!
//! That needs the receiving process, known only where this crate started
//! it: the pool's channel to a worker (the pool holds the worker's process
//! handle). Message bytes never name a process — a forged process id would
//! let a sender take a third process's handles — and the id the OS gives
//! for a named pipe's other end is the process that *opened* it, not the
//! one holding it now (an end passed to a child still names the parent),
//! so neither is used. On the receiving side, values are taken only on an
//! end whose peer is trusted to have put them there (the pool worker's end,
//! whose peer is the parent that started it); elsewhere the message is
//! refused.
//!
//! A handle duplicated into a worker whose message is never received (the
//! worker died first) stays open in that worker until it exits, like every
//! handle of a process: the leak is bounded by the worker's life.

use std::collections::HashSet;
use std::io;
use std::os::windows::io::{AsRawHandle, FromRawHandle, OwnedHandle};

use std::ptr;

use windows_sys::Win32::Foundation::{
    DuplicateHandle, GetHandleInformation, DUPLICATE_SAME_ACCESS, FALSE, HANDLE,
};
use windows_sys::Win32::System::Threading::GetCurrentProcess;

use super::{cvt, handle_to_token, pipe::Channel, token_to_handle, BorrowedRaw, OwnedRaw};

/// The most handles one message may carry (checked on both sides).
pub(crate) const MAX_MESSAGE_HANDLES: usize = 4096;

fn bad(why: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why)
}

impl Channel {
    /// Duplicates `handles` into `peer` (a process handle with
    /// `PROCESS_DUP_HANDLE`: the process at the other end), and returns
    /// their values there, for the frame written next; without a known
    /// peer an error (see the module docs).
    pub(crate) fn send_handles(
        &self,
        handles: &[BorrowedRaw<'_>],
        peer: Option<BorrowedRaw<'_>>,
    ) -> io::Result<Vec<u64>> {
        let peer = peer.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::Unsupported,
                "on Windows a message can carry handles only to a process this one started \
                 (a pool worker); a Connection's other end is not known",
            )
        })?;
        if handles.is_empty() || handles.len() > MAX_MESSAGE_HANDLES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "a message can carry 1 to {MAX_MESSAGE_HANDLES} handles, not {}",
                    handles.len()
                ),
            ));
        }
        // SAFETY: plain call; returns the pseudo handle of this process,
        // which needs no closing.
        let me = unsafe { GetCurrentProcess() };
        let mut values = Vec::with_capacity(handles.len());
        for h in handles {
            let mut out: HANDLE = ptr::null_mut();
            // SAFETY: `h` is open (borrowed); `peer` is an open process
            // handle (borrowed) with PROCESS_DUP_HANDLE; `out` is a valid
            // place for the result, a value in the *peer's* table, which we
            // must not (and do not) wrap or close here.
            let ok = unsafe {
                DuplicateHandle(
                    me,
                    h.as_raw_handle(),
                    peer.as_raw_handle(),
                    &mut out,
                    0,
                    FALSE,
                    DUPLICATE_SAME_ACCESS,
                )
            };
            cvt(ok)?;
            values.push(handle_to_token(out));
        }
        Ok(values)
    }

    /// Nothing travels beside the frame on Windows: the values are in it.
    pub(crate) fn recv_handles(&self) -> io::Result<Vec<OwnedRaw>> {
        Ok(Vec::new())
    }

    /// Takes the handles whose values the frame carries, after checking
    /// that there are `count` of them, that this end trusts its peer to
    /// have put them here, and that each is an open handle, named once,
    /// and not this end's own pipe. On an error none is taken (values
    /// that a peer did put here stay open until this process exits).
    pub(crate) fn adopt_handles(
        &self,
        received: Vec<OwnedRaw>,
        count: usize,
        values: &[u64],
        trusted: bool,
    ) -> io::Result<Vec<OwnedRaw>> {
        if !received.is_empty() || values.len() != count || count > MAX_MESSAGE_HANDLES {
            return Err(bad(format!(
                "a message says it carries {count} handles and names {}",
                values.len()
            )));
        }
        if !trusted {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "a message with handles arrived on an end that takes them only from \
                 the process that started this one",
            ));
        }
        let mut seen = HashSet::new();
        let mut raws = Vec::with_capacity(count);
        for &v in values {
            let raw = token_to_handle(v)?;
            let own = self.as_raw().map(|p| p.as_raw_handle());
            if !seen.insert(v) || Some(raw) == own {
                return Err(bad(format!(
                    "handle value {v:#x} is named twice or is the connection's own"
                )));
            }
            let mut flags = 0u32;
            // SAFETY: only reads the flags of a handle-table entry; a value
            // that is not an open handle makes it fail, nothing more.
            if unsafe { GetHandleInformation(raw, &mut flags) } == 0 {
                return Err(bad(format!(
                    "handle value {v:#x} is not an open handle in this process"
                )));
            }
            raws.push(raw);
        }
        Ok(raws
            .into_iter()
            // SAFETY: each value is an open handle (checked above), named
            // once in this message, which the trusted peer duplicated into
            // this process for us alone: it is wrapped once, here.
            .map(|raw| unsafe { OwnedHandle::from_raw_handle(raw) })
            .collect())
    }
}

/// A copy of `h` owned by this process (not inheritable), to send later.
pub(crate) fn duplicate(h: BorrowedRaw<'_>) -> io::Result<OwnedRaw> {
    h.try_clone_to_owned()
}
