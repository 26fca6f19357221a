//! Handles in a message to a process this one does not know: what
//! CPython's `multiprocessing.reduction.DupHandle` does, with the sender's
//! start time added so that a reused process id can't be mistaken for it.
//!
//! An end whose other process is not known (a [`pipe()`](super::pipe()) end
//! handed to a child, or to two siblings; a copy of a known end passed
//! on) can't duplicate a handle into the receiver, so the **sender holds**
//! them: it makes its own copy of each (not inheritable), leaves it open,
//! unowned, in its own table, and the frame carries its process id, its
//! start time, the message's number and those values (the "held" block
//! below). The **receiver takes** them: it opens the sender
//! (`PROCESS_DUP_HANDLE | PROCESS_QUERY_LIMITED_INFORMATION |
//! SYNCHRONIZE`), checks that it is still the process that sent the
//! message (its start time, `GetProcessTimes`) and that it has not
//! exited, then takes each value out of it with `DUPLICATE_CLOSE_SOURCE`,
//! which closes the sender's copy whatever the outcome ("DuplicateHandle"
//! on MSDN). What the handles are is checked by the decoder of the value
//! that takes them (a section and its size, a kernel object's type), as
//! for any passed handle.
//!
//! The costs, as in CPython: a message that is never received keeps its
//! handles open in the sender until the sender exits; a message received
//! after its sender exited can't get them (they closed with it): the
//! receive fails with an error that says so ([`sender_gone`]). Nothing
//! of the receiver's leaks either way: the process handle it opens is
//! owned at once, and on any error every handle taken so far is closed.
//!
//! Bytes name a process here, which the known-peer paths
//! (`rights.rs`) never allow: the receiver trusts the sender's pid. A
//! forged block can't make the receiver misbehave (wrong values fail in
//! the named process's table, or yield a handle the decoder then
//! refuses; a process that is gone or was replaced fails the start-time
//! check), but it can make the receiver take — and so close — a handle
//! of another process of the same user that it names correctly. Only
//! pipe ends made by this crate carry such blocks (a `Listener`/`Client`
//! connection carries none, either way), so only processes that hold an
//! end of one of our pipes can write one; CPython's `DupHandle` has the
//! same exposure, without the start-time check.
//!
//! A message received by the process that sent it (both ends of a pipe
//! in one process) takes its own values back without `DuplicateHandle`:
//! it wraps only values this process left for that very message (a
//! process-wide table of values left, by message number), so a forged
//! block naming this process can never make it own a handle something
//! else here owns.
//!
//! The block's values: `HELD_TAG | pid << 32` (the tag is no handle
//! value: not a multiple of 4), the sender's creation time (a `FILETIME`
//! as a `u64`), the message's number in the sender, then one value per
//! handle. The known-peer forms carry exactly one value per handle, so
//! the two can't be confused.

use std::collections::{BTreeMap, HashSet};
use std::io;
use std::os::windows::io::{AsRawHandle, FromRawHandle, IntoRawHandle, OwnedHandle};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use windows_sys::Win32::Foundation::{ERROR_INVALID_PARAMETER, FALSE, FILETIME, HANDLE};
use windows_sys::Win32::System::Threading::{
    GetCurrentProcess, GetCurrentProcessId, GetProcessTimes, OpenProcess, PROCESS_DUP_HANDLE,
    PROCESS_QUERY_LIMITED_INFORMATION, PROCESS_SYNCHRONIZE,
};

use super::rights::take_out_of;
use super::{
    cvt, handle_to_token, is_os_error, is_signaled, owned_or_null, token_to_handle, BorrowedRaw,
    OwnedRaw,
};

/// The low 32 bits of a held block's first value.
const HELD_TAG: u64 = 1;

/// How many values a held block has besides one per handle.
pub(crate) const HELD_EXTRA: usize = 3;

/// The values this process left for messages and that it has not seen
/// taken, by value: the number of the message each was left for. An entry
/// whose value another process took (closing it here) stays until this
/// process leaves a new copy under the same value (Windows hands out freed
/// values again), so the table never holds more entries than values this
/// process has had open at once.
static LEFT: Mutex<BTreeMap<usize, u64>> = Mutex::new(BTreeMap::new());

/// The last message number given out.
static MESSAGES: AtomicU64 = AtomicU64::new(0);

fn left() -> std::sync::MutexGuard<'static, BTreeMap<usize, u64>> {
    LEFT.lock().unwrap_or_else(|e| e.into_inner())
}

fn bad(why: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why)
}

/// The error of a receive whose sender exited (or was never there).
fn sender_gone(pid: u32) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!(
            "the process that sent this message (pid {pid}) exited before the message was \
             received, and the handles it carried closed with it (on Windows a message's \
             handles stay in the process that sent it until they are received)"
        ),
    )
}

/// This process's id and creation time (a `FILETIME` as a `u64`), which
/// together name it for as long as it exists and never name another.
pub(crate) fn identity() -> io::Result<(u32, u64)> {
    static ME: OnceLock<(u32, u64)> = OnceLock::new();
    if let Some(&me) = ME.get() {
        return Ok(me);
    }
    // SAFETY: plain call; returns the pseudo handle of this process, which
    // needs no closing.
    let me = unsafe { GetCurrentProcess() };
    let start = start_time(me)?;
    // SAFETY: plain call.
    let pid = unsafe { GetCurrentProcessId() };
    Ok(*ME.get_or_init(|| (pid, start)))
}

/// Process `pid`, opened to take handles out of it, if it is still the
/// process that started at `start` (see [`identity`]) and has not
/// exited; `None` if it is gone: no process has that id any more,
/// another one has it now, or it exited (its handle table is gone with
/// it, even while others still hold its handle). An error if that can't
/// be told.
pub(super) fn open_live(pid: u32, start: u64) -> io::Result<Option<OwnedHandle>> {
    // SAFETY: plain call; the result is checked by `owned_or_null`.
    let raw = unsafe {
        OpenProcess(
            PROCESS_DUP_HANDLE | PROCESS_QUERY_LIMITED_INFORMATION | PROCESS_SYNCHRONIZE,
            FALSE,
            pid,
        )
    };
    // SAFETY: fresh return value of `OpenProcess`, owned by nobody else.
    let opened = match unsafe { owned_or_null(raw) } {
        Ok(p) => p,
        Err(e) if is_os_error(&e, ERROR_INVALID_PARAMETER) => return Ok(None),
        Err(e) => return Err(e),
    };
    let h = opened.as_raw_handle();
    if start_time(h)? != start || is_signaled(h) {
        return Ok(None);
    }
    Ok(Some(opened))
}

/// The creation time of `process` (opened with at least
/// `PROCESS_QUERY_LIMITED_INFORMATION`).
pub(super) fn start_time(process: HANDLE) -> io::Result<u64> {
    let mut times = [FILETIME {
        dwLowDateTime: 0,
        dwHighDateTime: 0,
    }; 4];
    let [c, e, k, u] = &mut times;
    // SAFETY: `process` is an open process handle (or this process's
    // pseudo handle) borrowed for the call; the four pointers are to
    // distinct, writable FILETIMEs that outlive it.
    let ok = unsafe { GetProcessTimes(process, c, e, k, u) };
    cvt(ok)?;
    Ok(u64::from(times[0].dwHighDateTime) << 32 | u64::from(times[0].dwLowDateTime))
}

/// Whether `values` is a held block for `count` handles.
pub(crate) fn is_held(values: &[u64], count: usize) -> bool {
    values.len() == count + HELD_EXTRA && values[0] & 0xffff_ffff == HELD_TAG
}

/// Leaves a copy of each of `handles` open in this process for the
/// message written next, and returns the block that names them (see the
/// module docs). On an error, the copies made so far are closed.
pub(crate) fn hold(handles: &[BorrowedRaw<'_>]) -> io::Result<Vec<u64>> {
    let (pid, start) = identity()?;
    let copies = handles
        .iter()
        .map(|h| h.try_clone_to_owned())
        .collect::<io::Result<Vec<OwnedHandle>>>()?;
    let number = MESSAGES.fetch_add(1, Ordering::Relaxed) + 1;
    let mut values = Vec::with_capacity(HELD_EXTRA + copies.len());
    values.extend([HELD_TAG | u64::from(pid) << 32, start, number]);
    let mut table = left();
    for copy in copies {
        let raw = copy.into_raw_handle();
        table.insert(raw as usize, number);
        values.push(handle_to_token(raw));
    }
    Ok(values)
}

/// Closes the copies a [`hold`] left for a message that was not sent
/// after all (its frame could not be written).
pub(crate) fn unhold(values: &[u64]) {
    let Some(&number) = values.get(2) else {
        return;
    };
    let mut table = left();
    for &v in values.iter().skip(HELD_EXTRA) {
        let Ok(raw) = token_to_handle(v) else {
            continue;
        };
        if table.get(&(raw as usize)) == Some(&number) {
            table.remove(&(raw as usize));
            // SAFETY: a copy `hold` left for this message (the table says
            // so, for this number), unowned, and known to no one: the
            // message was not sent. Wrapped once, to be closed.
            drop(unsafe { OwnedHandle::from_raw_handle(raw) });
        }
    }
}

/// Takes the handles a held block (checked with [`is_held`]) names: out
/// of the sender, or back from this process's own table. Every value is
/// tried, so that none stays behind in the sender; on any error the ones
/// taken are closed and the first error is returned.
pub(crate) fn take(values: &[u64]) -> io::Result<Vec<OwnedRaw>> {
    let pid = (values[0] >> 32) as u32;
    let (start, number) = (values[1], values[2]);
    let handles = &values[HELD_EXTRA..];
    let mut seen = HashSet::new();
    if let Some(v) = handles.iter().find(|&&v| !seen.insert(v)) {
        return Err(bad(format!("handle value {v:#x} is named twice")));
    }
    if (pid, start) == identity()? {
        return take_own(number, handles);
    }
    let opened = match open_live(pid, start) {
        Ok(Some(p)) => p,
        Ok(None) => return Err(sender_gone(pid)),
        Err(e) => {
            return Err(io::Error::new(
                e.kind(),
                format!("cannot open the process that sent this message (pid {pid}): {e}"),
            ))
        }
    };
    let sender = opened.as_raw_handle();
    let who = format!("the process that sent this message (pid {pid})");
    match take_out_of(sender, handles, &who) {
        // The sender may have exited while we took them: say that.
        Err(_) if is_signaled(sender) => Err(sender_gone(pid)),
        r => r,
    }
}

/// The handles of a message this process sent itself: only values it
/// left for message `number` (and not yet taken), each wrapped once.
fn take_own(number: u64, handles: &[u64]) -> io::Result<Vec<OwnedRaw>> {
    let mut table = left();
    let mut taken = Vec::with_capacity(handles.len());
    let mut first_error = None;
    for &v in handles {
        let raw = match token_to_handle(v) {
            Ok(raw) => raw,
            Err(e) => {
                first_error.get_or_insert(e);
                continue;
            }
        };
        if table.get(&(raw as usize)) == Some(&number) {
            table.remove(&(raw as usize));
            // SAFETY: a copy `hold` left in this process for message
            // `number`, unowned (the table says so, and the entry is gone
            // now, so it is wrapped once, here).
            taken.push(unsafe { OwnedHandle::from_raw_handle(raw) });
        } else {
            first_error.get_or_insert_with(|| {
                bad(format!(
                    "handle value {v:#x} is not one this process left for the message that \
                     names it"
                ))
            });
        }
    }
    match first_error {
        None => Ok(taken),
        Some(e) => Err(e),
    }
}
