//! Handles inside a `Connection` message. Windows has no way to send a
//! handle down a pipe: it must be duplicated from one process's handle
//! table into another's (`DuplicateHandle`), by a process that holds a
//! handle with `PROCESS_DUP_HANDLE` on the other one, and the frame
//! carries handle values.
//!
//! The rule ([`Peer`]): **the parent does every duplication, both ways.**
//! Only ends whose other process is known take part: the parent's end of
//! a channel it made for a child at the child's spawn (a pool worker's,
//! `Process::spawn_connected`'s; it holds the child's process handle from
//! `CreateProcessW`, which can't name another process), and the child's
//! end of it (its peer is the parent; see `codec::handles` for how each
//! end learns it). Sending:
//!
//! - parent → child: the parent duplicates each handle into the child and
//!   the frame carries the values there; the child wraps them (values its
//!   parent put into it, for it alone);
//! - child → parent: the child makes its own copy of each handle and
//!   leaves it open, unowned, in its table; the frame carries those
//!   values; the parent takes each out of the child with
//!   `DUPLICATE_CLOSE_SOURCE`, which closes the child's copy whatever the
//!   outcome ("DuplicateHandle" on MSDN), so a handle is always owned by
//!   exactly one side.
//!
//! Why nothing leaks or can be forged: a value the receiver wraps or takes
//! was put there by the process at the other end (only the two known ends
//! send handles; a copy of either passed on to a third process has no
//! known peer and refuses, and message bytes never name a process — a
//! forged process id would let a sender take a third process's handles,
//! and the OS's id for a named pipe's other end is the process that
//! *opened* it, not the one holding it now). A value the parent takes
//! out of a child is checked by the OS in the child's table: a wrong one
//! fails there (or takes what the child itself named); the parent always
//! gets a fresh handle of its own. A child's copies left for a parent
//! that never reads them die with the child; handles put into a child
//! that never reads them stay open in it until it exits. A send that
//! fails part-way takes back what it put into the child (closing it there)
//! or closes the copies it left, so the stream and both tables are as
//! before.

use std::collections::HashSet;
use std::io;
use std::os::windows::io::{AsRawHandle, FromRawHandle, IntoRawHandle, OwnedHandle};

use std::ptr;

use windows_sys::Win32::Foundation::{
    DuplicateHandle, GetHandleInformation, DUPLICATE_CLOSE_SOURCE, DUPLICATE_SAME_ACCESS, FALSE,
    HANDLE,
};
use windows_sys::Win32::System::Threading::GetCurrentProcess;

use super::{cvt, handle_to_token, pipe::Channel, token_to_handle, BorrowedRaw, OwnedRaw};
use crate::sys::Peer;

/// The most handles one message may carry (checked on both sides).
pub(crate) const MAX_MESSAGE_HANDLES: usize = 4096;

fn bad(why: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why)
}

fn unknown_peer() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "on Windows a message can carry handles only to a process this one started, or \
         back from it, over the channel made for it at its spawn \
         (Process::spawn_connected's, a pool worker's); the process at this Connection's \
         other end is not known",
    )
}

/// Duplicates `h`, a value in `from`'s table, into `to`'s, with the same
/// access, closing the source with `close_source` (whatever the outcome,
/// as the OS does); the new value in `to`.
fn duplicate_between(
    from: HANDLE,
    h: HANDLE,
    to: HANDLE,
    close_source: bool,
) -> io::Result<HANDLE> {
    let mut out: HANDLE = ptr::null_mut();
    let flags = DUPLICATE_SAME_ACCESS
        | if close_source {
            DUPLICATE_CLOSE_SOURCE
        } else {
            0
        };
    // SAFETY: `from` and `to` are open process handles (or this process's
    // pseudo handle) with PROCESS_DUP_HANDLE, borrowed by the caller for
    // the call; `h` is only a value in `from`'s table, which the OS checks
    // there; `out` is a valid place for the result, a value in `to`'s
    // table, which the caller owns or hands over.
    let ok = unsafe { DuplicateHandle(from, h, to, &mut out, 0, FALSE, flags) };
    cvt(ok)?;
    Ok(out)
}

/// Closes `h`, a value in `process`'s table that this process put there
/// and that nobody there knows of yet.
fn close_in(process: HANDLE, h: HANDLE) {
    // SAFETY: `process` is an open process handle with PROCESS_DUP_HANDLE;
    // DUPLICATE_CLOSE_SOURCE with no target only closes `h` there, which
    // is ours to close (we made it and never told anyone).
    unsafe {
        DuplicateHandle(
            process,
            h,
            ptr::null_mut(),
            ptr::null_mut(),
            0,
            FALSE,
            DUPLICATE_CLOSE_SOURCE,
        )
    };
}

impl Channel {
    /// The values the frame written next carries for `handles`, by
    /// `peer` (see the module docs): duplicated into a `Child`; copies
    /// left here for the `Parent` to take; an `Unsupported` error for an
    /// `Unknown` peer. On an error, what was done is undone.
    pub(crate) fn send_handles(
        &self,
        handles: &[BorrowedRaw<'_>],
        peer: Peer<'_>,
    ) -> io::Result<Vec<u64>> {
        if matches!(peer, Peer::Unknown) {
            return Err(unknown_peer());
        }
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
        let mut made: Vec<HANDLE> = Vec::with_capacity(handles.len());
        for h in handles {
            let r = match peer {
                Peer::Child(child) => {
                    duplicate_between(me, h.as_raw_handle(), child.as_raw_handle(), false)
                }
                // A copy of our own, left open for the parent to take.
                _ => h.try_clone_to_owned().map(IntoRawHandle::into_raw_handle),
            };
            match r {
                Ok(v) => made.push(v),
                Err(e) => {
                    for v in made {
                        match peer {
                            Peer::Child(child) => close_in(child.as_raw_handle(), v),
                            // SAFETY: `v` is a copy made above, owned by
                            // nobody else yet: wrapped once, to be closed.
                            _ => drop(unsafe { OwnedHandle::from_raw_handle(v) }),
                        }
                    }
                    return Err(e);
                }
            }
        }
        Ok(made.into_iter().map(handle_to_token).collect())
    }

    /// Never on Windows: a handle send is never cut short in the stream
    /// (nothing is written before all handles are where they go).
    pub(crate) fn handles_out_of_step(&self) -> bool {
        false
    }

    /// Nothing travels beside the frame on Windows: the values are in it.
    pub(crate) fn recv_handles(&self) -> io::Result<Vec<OwnedRaw>> {
        Ok(Vec::new())
    }

    /// Takes the handles whose values the frame carries, after checking
    /// that there are `count` of them, each named once: from a `Child`,
    /// out of it (its copies closed, see the module docs); from the
    /// `Parent`, the values it put here, each checked to be an open
    /// handle and not this end's own pipe. An `Unknown` peer: refused.
    /// On an error none is kept (from a child: all it named are closed
    /// there).
    pub(crate) fn adopt_handles(
        &self,
        received: Vec<OwnedRaw>,
        count: usize,
        values: &[u64],
        peer: Peer<'_>,
    ) -> io::Result<Vec<OwnedRaw>> {
        if !received.is_empty() || values.len() != count || count > MAX_MESSAGE_HANDLES {
            return Err(bad(format!(
                "a message says it carries {count} handles and names {}",
                values.len()
            )));
        }
        match peer {
            Peer::Unknown => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "a message with handles arrived on an end whose other process is not known \
                 (only a child's channel to its parent, and the parent's to it, carry them)",
            )),
            Peer::Child(child) => take_from_child(child, values),
            Peer::Parent => self.wrap_from_parent(values),
        }
    }

    /// The values the parent duplicated into this process for this
    /// message.
    fn wrap_from_parent(&self, values: &[u64]) -> io::Result<Vec<OwnedRaw>> {
        let mut seen = HashSet::new();
        let mut raws = Vec::with_capacity(values.len());
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
            // once in this message, which the parent (the only process
            // that sends this end handles) duplicated into this process
            // for us alone: it is wrapped once, here.
            .map(|raw| unsafe { OwnedHandle::from_raw_handle(raw) })
            .collect())
    }
}

/// Takes each of `values` out of `child` (its copies, left for us),
/// closing them there. Every value is tried, so that none stays behind in
/// the child; on any error the ones taken are closed and the first error
/// is returned.
fn take_from_child(child: BorrowedRaw<'_>, values: &[u64]) -> io::Result<Vec<OwnedRaw>> {
    let mut seen = HashSet::new();
    if let Some(v) = values.iter().find(|&&v| !seen.insert(v)) {
        return Err(bad(format!("handle value {v:#x} is named twice")));
    }
    // SAFETY: plain call; returns the pseudo handle of this process, which
    // needs no closing.
    let me = unsafe { GetCurrentProcess() };
    let mut taken = Vec::with_capacity(values.len());
    let mut first_error = None;
    for &v in values {
        let r = token_to_handle(v).and_then(|h| {
            duplicate_between(child.as_raw_handle(), h, me, true).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot take handle {v:#x} out of the sending process: {e}"),
                )
            })
        });
        match r {
            // SAFETY: a new handle in this process, made by the call
            // above, ours alone.
            Ok(raw) => taken.push(unsafe { OwnedHandle::from_raw_handle(raw) }),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        None => Ok(taken),
        Some(e) => Err(e),
    }
}

/// A copy of `h` owned by this process (not inheritable), to send later.
pub(crate) fn duplicate(h: BorrowedRaw<'_>) -> io::Result<OwnedRaw> {
    h.try_clone_to_owned()
}
