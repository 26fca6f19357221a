//! [`SysLane`], Windows: where a queue's large items wait (the design is
//! in `queue/mod.rs`, "Bounds and large items"). Windows has no handle in
//! flight that no process holds: a section lives while some process has a
//! handle or a view of it. So a large item's section is kept by one
//! process for the queue, its *keeper*: the process that created the
//! queue. Every process holding the queue has a handle to the keeper's
//! process (with `PROCESS_DUP_HANDLE`, passed like the queue's other
//! handles); a producer duplicates the item's read-only section handle
//! into the keeper's table (`DuplicateHandle`, "DuplicateHandle" on
//! MSDN: the source process may push a handle into a target process it
//! holds with that right) and the queue's record keeps the value it got
//! there. A consumer duplicates the value out of the keeper (a copy: the
//! keeper's stays), maps and checks it, and closes the keeper's copy
//! (`DUPLICATE_CLOSE_SOURCE` with no target) only after its item left the
//! ring, so a consumer killed before that leaves the item to the next.
//!
//! The keeper never knows of the handles it holds: they are values in its
//! table, owned by the queue's records. What that costs:
//!
//! - a large item lives as long as the keeper: if the process that
//!   created the queue exits (or is killed), the large items it kept are
//!   gone (a consumer skips their records), and a later large `put` fails
//!   with an error saying so;
//! - a producer killed between the push and its record's commit, or a
//!   consumer killed between its commit and the close, leaves one handle
//!   in the keeper's table until the keeper exits.

use std::io;
use std::os::windows::io::{AsHandle, AsRawHandle, FromRawHandle, OwnedHandle};
use std::ptr;

use windows_sys::Win32::Foundation::{
    DuplicateHandle, DUPLICATE_CLOSE_SOURCE, DUPLICATE_SAME_ACCESS, ERROR_INVALID_HANDLE, FALSE,
    HANDLE, WAIT_OBJECT_0,
};
use windows_sys::Win32::System::Threading::{
    GetCurrentProcess, GetProcessId, WaitForSingleObject, PROCESS_DUP_HANDLE,
    PROCESS_QUERY_LIMITED_INFORMATION, PROCESS_SYNCHRONIZE,
};

use super::{cvt, is_os_error, BorrowedRaw, OwnedRaw};

/// The lane of one queue (see the module docs): a handle to its keeper.
#[derive(Debug)]
pub(crate) struct SysLane {
    keeper: OwnedHandle,
}

impl SysLane {
    /// The lane carries blocks on Windows.
    pub(crate) const ENABLED: bool = true;

    /// The handles of its wire form: the keeper's process.
    pub(crate) const HANDLES: usize = 1;

    /// A new lane, kept by this process.
    pub(crate) fn new() -> io::Result<SysLane> {
        // SAFETY: plain call; a pseudo handle that needs no closing.
        let me = unsafe { GetCurrentProcess() };
        let mut out: HANDLE = ptr::null_mut();
        // SAFETY: `me` is this process's pseudo handle (all access), used
        // as source process, source handle and target; the access asked
        // for is a subset of it; `out` is a valid place for the result.
        let ok = unsafe {
            DuplicateHandle(
                me,
                me,
                me,
                &mut out,
                PROCESS_DUP_HANDLE | PROCESS_QUERY_LIMITED_INFORMATION | PROCESS_SYNCHRONIZE,
                FALSE,
                0,
            )
        };
        cvt(ok)?;
        // SAFETY: on success `out` is a new handle in this process, ours
        // alone.
        let keeper = unsafe { OwnedHandle::from_raw_handle(out) };
        Ok(SysLane { keeper })
    }

    /// The handles and the word of its wire form (the word is 0).
    pub(crate) fn parts(&self) -> (Vec<BorrowedRaw<'_>>, u64) {
        (vec![self.keeper.as_handle()], 0)
    }

    /// A received lane: one handle, checked to be a process's.
    pub(crate) fn from_parts(handles: Vec<OwnedRaw>, _word: u64) -> io::Result<SysLane> {
        let [keeper]: [OwnedHandle; 1] = handles.try_into().map_err(|h: Vec<OwnedHandle>| {
            invalid(format!("a queue's lane with {} handles, not 1", h.len()))
        })?;
        // SAFETY: `keeper` is an open handle we own; GetProcessId only
        // queries it (0 if it is not a process handle).
        if unsafe { GetProcessId(keeper.as_raw_handle() as HANDLE) } == 0 {
            return Err(invalid("a queue's lane is not a process handle".into()));
        }
        Ok(SysLane { keeper })
    }

    /// Hands `block` to the keeper: a copy of it in the keeper's table,
    /// whose value is the word the queue's record keeps. An error if the
    /// keeper is gone. Never `None` (the keeper's table has no bound the
    /// queue would wait for).
    pub(crate) fn send(&self, block: BorrowedRaw<'_>, _tag: u64) -> io::Result<Option<u64>> {
        // SAFETY: plain call; a pseudo handle that needs no closing.
        let me = unsafe { GetCurrentProcess() };
        let mut out: HANDLE = ptr::null_mut();
        // SAFETY: `block` is an open handle the caller borrows; the keeper
        // handle is open with PROCESS_DUP_HANDLE; `out` is a valid place
        // for the result, a value in the keeper's table that the queue's
        // record owns from now on (module docs).
        let ok = unsafe {
            DuplicateHandle(
                me,
                block.as_raw_handle() as HANDLE,
                self.keeper.as_raw_handle() as HANDLE,
                &mut out,
                0,
                FALSE,
                DUPLICATE_SAME_ACCESS,
            )
        };
        cvt(ok).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "cannot hand a large item to the process that created the queue, \
                     which keeps them on Windows (has it exited?): {e}"
                ),
            )
        })?;
        Ok(Some(out as usize as u64))
    }

    /// A copy of the block at `loc` in the keeper's table, which keeps
    /// its own; `None` if it is not there (the keeper exited, or `loc`
    /// names no handle there).
    pub(crate) fn open(&self, _tag: u64, loc: u64) -> io::Result<Option<OwnedRaw>> {
        // SAFETY: plain call; a pseudo handle that needs no closing.
        let me = unsafe { GetCurrentProcess() };
        let mut out: HANDLE = ptr::null_mut();
        // SAFETY: the keeper handle is open with PROCESS_DUP_HANDLE; `loc`
        // is only a value in its table, which the OS checks there; `out`
        // is a valid place for the result, a new handle in this process.
        let ok = unsafe {
            DuplicateHandle(
                self.keeper.as_raw_handle() as HANDLE,
                loc as usize as HANDLE,
                me,
                &mut out,
                0,
                FALSE,
                DUPLICATE_SAME_ACCESS,
            )
        };
        match cvt(ok) {
            // SAFETY: on success `out` is a new handle in this process,
            // ours alone.
            Ok(()) => Ok(Some(unsafe { OwnedHandle::from_raw_handle(out) })),
            Err(e) if is_os_error(&e, ERROR_INVALID_HANDLE) || self.keeper_exited() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Closes the keeper's copy at `loc` once its item left the queue
    /// (after [`open`](SysLane::open) found it there and the caller
    /// checked it was the item's block).
    pub(crate) fn taken(&self, _tag: u64, loc: u64) {
        // SAFETY: the keeper handle is open with PROCESS_DUP_HANDLE;
        // DUPLICATE_CLOSE_SOURCE with no target only closes `loc` there,
        // a value a producer put there for this item, which the caller
        // checked and which no one else closes: the item left the queue
        // under its lock, so no other consumer reaches its record.
        unsafe {
            DuplicateHandle(
                self.keeper.as_raw_handle() as HANDLE,
                loc as usize as HANDLE,
                ptr::null_mut(),
                ptr::null_mut(),
                0,
                FALSE,
                DUPLICATE_CLOSE_SOURCE,
            )
        };
    }

    /// Lets go of the blocks that no record names: not done here (module
    /// docs: such a handle stays in the keeper until it exits).
    pub(crate) fn sweep(&self, _named: &[(u64, u64)]) {}

    /// How many blocks the lane holds: not known here (`Unsupported`).
    #[cfg(feature = "test-hooks")]
    pub(crate) fn blocks(&self) -> io::Result<usize> {
        Err(io::ErrorKind::Unsupported.into())
    }

    /// The keeper process exited.
    fn keeper_exited(&self) -> bool {
        // SAFETY: the keeper handle is open with SYNCHRONIZE; a wait of 0
        // ms only polls it.
        unsafe { WaitForSingleObject(self.keeper.as_raw_handle() as HANDLE, 0) == WAIT_OBJECT_0 }
    }
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::{shm_create, shm_freeze};

    #[test]
    fn a_block_handed_to_the_keeper_can_be_opened_until_taken() {
        let lane = SysLane::new().unwrap();
        let b = shm_freeze(shm_create(4096).unwrap()).unwrap();
        let loc = lane.send(b.as_handle(), 1).unwrap().unwrap();
        drop(b);
        let copy = lane.open(1, loc).unwrap().expect("there");
        drop(copy);
        assert!(lane.open(1, loc).unwrap().is_some(), "still there");
        lane.taken(1, loc);
        // (Not opened again: the value may name another handle by now.)
    }

    #[test]
    fn an_event_is_not_a_lane() {
        let ev = super::super::new_event().unwrap();
        let e = SysLane::from_parts(vec![ev], 0).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
    }
}
