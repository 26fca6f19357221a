//! Job objects: each child runs in its own, so that everything it starts
//! can be ended with it, and, when asked, dies with this process.
//!
//! Every job also allows breakaway (`JOB_OBJECT_LIMIT_BREAKAWAY_OK`): a
//! process in it may start a child outside it, with
//! `CREATE_BREAKAWAY_FROM_JOB`, and only then. The crate's one such child
//! is a queue's lane keeper (`keeper.rs`), which must not die with the
//! worker that happened to start it; any other child still joins the job.

use std::ffi::c_void;
use std::io;
use std::mem::size_of;
use std::os::windows::io::{AsRawHandle, OwnedHandle};
use std::ptr;
use std::sync::Mutex;

use windows_sys::Win32::System::JobObjects::{
    AssignProcessToJobObject, CreateJobObjectW, JobObjectBasicAccountingInformation,
    JobObjectExtendedLimitInformation, QueryInformationJobObject, SetInformationJobObject,
    JOBOBJECT_BASIC_ACCOUNTING_INFORMATION, JOBOBJECT_EXTENDED_LIMIT_INFORMATION,
    JOB_OBJECT_LIMIT_BREAKAWAY_OK, JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE,
};
use windows_sys::Win32::System::Threading::ResumeThread;

use super::{cvt, owned_or_null};

/// Puts the suspended `process` into a new job object and resumes `thread`.
///
/// With `kill_on_close` the job gets `JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE`:
/// when its last handle closes (ours; also when this process dies,
/// however) every process in it is killed. If the job cannot be joined
/// (`AssignProcessToJobObject` fails, e.g. under a parent job that forbids
/// nesting) that is an error only when `kill_on_close` asks for it;
/// otherwise the child runs without a job and `terminate_tree` ends only
/// the child itself.
pub(super) fn contain(
    process: &OwnedHandle,
    thread: &OwnedHandle,
    kill_on_close: bool,
) -> io::Result<Option<Job>> {
    // SAFETY: no security attributes (not inheritable), no name; the result
    // is checked by `owned_or_null`.
    let raw = unsafe { CreateJobObjectW(ptr::null(), ptr::null()) };
    // SAFETY: fresh return value of `CreateJobObjectW`, owned by nobody else.
    let job = unsafe { owned_or_null(raw) }?;
    let mut limits = JOBOBJECT_EXTENDED_LIMIT_INFORMATION::default();
    limits.BasicLimitInformation.LimitFlags = JOB_OBJECT_LIMIT_BREAKAWAY_OK
        | if kill_on_close {
            JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE
        } else {
            0
        };
    // SAFETY: `job` is open; `limits` is the structure the class names,
    // with its size, valid for the call.
    let ok = unsafe {
        SetInformationJobObject(
            job.as_raw_handle(),
            JobObjectExtendedLimitInformation,
            (&limits as *const JOBOBJECT_EXTENDED_LIMIT_INFORMATION).cast::<c_void>(),
            size_of::<JOBOBJECT_EXTENDED_LIMIT_INFORMATION>() as u32,
        )
    };
    // Breakaway is only for a lane's keeper: a job that can't allow it
    // still contains the child.
    if kill_on_close {
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

/// A child's job object.
pub(super) struct Job {
    /// The job (all access). Only this process has a handle to it.
    pub(super) handle: OwnedHandle,
    /// Whether it kills its processes when the handle closes.
    pub(super) kill_on_close: bool,
}

impl Job {
    /// Whether any process is still in the job. `true` if that can't be
    /// told (keep rather than kill).
    pub(super) fn has_processes(&self) -> bool {
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

/// Jobs with `KILL_ON_JOB_CLOSE` whose [`Child`](super::Child) was dropped while processes
/// were still in them. Closing the handle would kill those processes, but
/// dropping a `Child` must not kill; so the handle is kept until the job is
/// empty (checked whenever another one is added) or this process exits,
/// which then kills them as promised.
pub(super) static KEPT_JOBS: Mutex<Vec<Job>> = Mutex::new(Vec::new());
