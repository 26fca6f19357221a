//! Handles inside a `Connection` message. Windows has no way to send a
//! handle down a pipe: it must be duplicated from one process's handle
//! table into another's (`DuplicateHandle`), by a process that holds a
//! handle with `PROCESS_DUP_HANDLE` on the other one, and the frame
//! carries handle values. Two ways, by what the end knows of the process
//! at its other end ([`Peer`]):
//!
//! **A known peer: the parent does every duplication, both ways.** The
//! parent's end of a channel it made for a child at the child's spawn (a
//! pool worker's, `Process::spawn_connected`'s; it holds the child's
//! process handle from `CreateProcessW`, which can't name another
//! process), and the child's end of it (its peer is the parent; see
//! `codec::handles` for how each end learns it). Sending:
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
//! Here message bytes never name a process, and a value the receiver
//! wraps or takes was put there by the process at the other end. A value
//! the parent takes out of a child is checked by the OS in the child's
//! table: a wrong one fails there (or takes what the child itself named);
//! the parent always gets a fresh handle of its own. A child's copies left
//! for a parent that never reads them die with the child; handles put
//! into a child that never reads them stay open in it until it exits.
//! These frames are refused by an end that does not know its peer (a copy
//! of a known end passed on to a third process): their values are in
//! another process's table.
//!
//! **Any other pipe end: the sender holds, the receiver takes** (CPython's
//! `DupHandle`; `held.rs`): the frame names the sending process (its id
//! and start time) and the copies it left open in itself; whoever
//! receives opens it and takes them out with `DUPLICATE_CLOSE_SOURCE`.
//! Such a frame is taken by any pipe end, known peer or not. A message
//! never received keeps its handles open in the sender until the sender
//! exits; one received after its sender exited fails with an error that
//! says so.
//!
//! A `Listener`/`Client` connection (a socket, or a named pipe opened by
//! its name) carries no handles either way: it refuses to send them, and refuses a frame that says it carries
//! some without opening any process it names.
//!
//! A send that fails part-way (a duplication, or writing the frame) takes
//! back what it put into the child (closing it there) or closes the
//! copies it left, so the stream and every table are as before.

use std::collections::HashSet;
use std::io;
use std::os::windows::io::{AsRawHandle, FromRawHandle, IntoRawHandle, OwnedHandle};

use std::ptr;

use windows_sys::Win32::Foundation::{
    DuplicateHandle, GetHandleInformation, DUPLICATE_CLOSE_SOURCE, DUPLICATE_SAME_ACCESS, FALSE,
    HANDLE,
};
use windows_sys::Win32::System::Threading::GetCurrentProcess;

use super::{cvt, handle_to_token, held, pipe::Channel, token_to_handle, BorrowedRaw, OwnedRaw};
use crate::sys::Peer;

/// The most handles one message may carry (checked on both sides).
pub(crate) const MAX_MESSAGE_HANDLES: usize = 4096;

/// The most values a message's handle block may name: one per handle, and
/// a held block's own (`held.rs`).
pub(crate) const MAX_BLOCK_VALUES: usize = MAX_MESSAGE_HANDLES + held::HELD_EXTRA;

fn bad(why: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why)
}

fn on_a_socket() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "a Listener/Client connection carries no handles (only a Pipe's ends do)",
    )
}

/// Duplicates `h`, a value in `from`'s table, into `to`'s, with the same
/// access, closing the source with `close_source` (whatever the outcome,
/// as the OS does); the new value in `to`.
pub(super) fn duplicate_between(
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
    /// left here for the `Parent` to take; for an `Unknown` peer, copies
    /// held here for whoever receives (a held block, `held.rs`). A
    /// socket (`Listener`/`Client`) carries none: an `Unsupported` error.
    /// On an error, what was done is undone.
    pub(crate) fn send_handles(
        &self,
        handles: &[BorrowedRaw<'_>],
        peer: Peer<'_>,
    ) -> io::Result<Vec<u64>> {
        if self.net {
            return Err(on_a_socket());
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
        if matches!(peer, Peer::Unknown) {
            return held::hold(handles);
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

    /// The frame that was to carry `values` (from [`send_handles`](Self::send_handles)
    /// with the same `peer`) could not be written whole, so no receiver
    /// can take them: closes what `send_handles` made (in the child it
    /// pushed them into, or here).
    pub(crate) fn unsend_handles(&self, values: &[u64], peer: Peer<'_>) {
        if held::is_held(values, values.len().saturating_sub(held::HELD_EXTRA)) {
            return held::unhold(values);
        }
        for &v in values {
            let Ok(raw) = token_to_handle(v) else {
                continue;
            };
            match peer {
                Peer::Child(child) => close_in(child.as_raw_handle(), raw),
                // SAFETY: a copy `send_handles` left here for the parent,
                // unowned, which the parent can't take: the frame naming
                // it was not written. Wrapped once, to be closed.
                Peer::Parent => drop(unsafe { OwnedHandle::from_raw_handle(raw) }),
                Peer::Unknown => {}
            }
        }
    }

    /// Takes the handles whose values the frame carries, after checking
    /// that there are `count` of them, each named once. A held block
    /// (`held.rs`), whatever the peer: out of the process that sent it
    /// (its copies closed there). Otherwise, by `peer`: from a `Child`,
    /// out of it (its copies closed, see the module docs); from the
    /// `Parent`, the values it put here, each checked to be an open
    /// handle and not this end's own pipe; an `Unknown` peer: refused
    /// (those values are in another process, put there or left there for
    /// the known peer of a copy of this end). On a socket, refused
    /// whatever the block says. On an error none is kept (from another
    /// process: all it named are closed there).
    pub(crate) fn adopt_handles(
        &self,
        received: Vec<OwnedRaw>,
        count: usize,
        values: &[u64],
        peer: Peer<'_>,
    ) -> io::Result<Vec<OwnedRaw>> {
        if self.net {
            // Never a process id that a peer over the network names.
            return Err(on_a_socket());
        }
        if !received.is_empty() || count > MAX_MESSAGE_HANDLES {
            return Err(bad(format!(
                "a message says it carries {count} handles and names {}",
                values.len()
            )));
        }
        if held::is_held(values, count) {
            return held::take(values);
        }
        if values.len() != count {
            return Err(bad(format!(
                "a message says it carries {count} handles and names {}",
                values.len()
            )));
        }
        match peer {
            Peer::Unknown => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "a message with handles for a known peer (a child's channel to its parent, or \
                 the parent's to it) arrived on an end whose other process is not known (a copy \
                 of such an end passed on); they stay in the process they were put into",
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
/// closing them there; see [`take_out_of`].
fn take_from_child(child: BorrowedRaw<'_>, values: &[u64]) -> io::Result<Vec<OwnedRaw>> {
    take_out_of(child.as_raw_handle(), values, "the sending process")
}

/// Takes each of `values` out of the process `source` (a handle with
/// `PROCESS_DUP_HANDLE`), closing them there (`DUPLICATE_CLOSE_SOURCE`);
/// `who` names that process in errors. A value named twice is refused
/// before any is taken. Every value is tried, so that none stays behind
/// in `source`; on any error the ones taken are closed and the first
/// error is returned.
pub(super) fn take_out_of(source: HANDLE, values: &[u64], who: &str) -> io::Result<Vec<OwnedRaw>> {
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
            duplicate_between(source, h, me, true).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot take handle {v:#x} out of {who}: {e}"),
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
