//! Waiting for several handles at once (more than `MAXIMUM_WAIT_OBJECTS`
//! too), and a waitable handle on any process.

use std::io;
use std::os::windows::io::AsRawHandle;
use std::time::{Duration, Instant};

use windows_sys::Win32::Foundation::{
    FALSE, HANDLE, WAIT_ABANDONED_0, WAIT_FAILED, WAIT_OBJECT_0, WAIT_TIMEOUT,
};
use windows_sys::Win32::Storage::FileSystem::{GetFileType, FILE_TYPE_PIPE};
use windows_sys::Win32::System::Threading::{SetEvent, WaitForMultipleObjects};

use super::{
    is_signaled, ms_until, new_event,
    overlapped::{Finished, Op},
    BorrowedRaw, MAX_WAIT_OBJECTS,
};
use crate::deadline;

/// Waits until one of `handles` is signaled or `timeout_ms` passes;
/// `Ok(Some(i))` for the first signaled one (the lowest index wins when
/// several are), `Ok(None)` on timeout. Any number of handles: beyond
/// [`MAX_WAIT_OBJECTS`], helper threads wait on groups of them.
pub(super) fn wait_for_any(handles: &[HANDLE], timeout_ms: u32) -> io::Result<Option<usize>> {
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
pub(super) fn wait_for_group(handles: &[HANDLE], timeout_ms: u32) -> io::Result<Option<usize>> {
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
pub(super) fn wait_any_once(
    objs: &[BorrowedRaw<'_>],
    deadline: Option<Instant>,
) -> io::Result<Vec<usize>> {
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
