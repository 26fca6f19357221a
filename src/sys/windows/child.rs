//! Parent side: a started child, the handles it keeps until the child no
//! longer needs them, and handles passed to it while it starts.

use std::io;
use std::os::windows::io::{AsHandle, AsRawHandle, OwnedHandle};
use std::ptr;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use windows_sys::Win32::Foundation::{
    DuplicateHandle, DUPLICATE_SAME_ACCESS, ERROR_ACCESS_DENIED, FALSE, HANDLE, WAIT_FAILED,
    WAIT_OBJECT_0, WAIT_TIMEOUT,
};
use windows_sys::Win32::System::JobObjects::TerminateJobObject;
use windows_sys::Win32::System::Threading::{
    GetCurrentProcess, GetExitCodeProcess, TerminateProcess, WaitForSingleObject,
};

use super::{
    cvt, handle_to_token, is_os_error, is_signaled,
    job::{Job, KEPT_JOBS},
    ms_until,
    wait::wait_for_any,
    BorrowedRaw, TERMINATE_CODE,
};
use crate::deadline;
use crate::sys::RawStatus;

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
///   after [`spawn`](super::spawn()) returned it is usually still starting), is kept until
///   it has or has exited ([`KEPT_PEERS`]). Closed now, the child would
///   find nothing to duplicate and could never start.
pub(crate) struct Child {
    /// The process handle from `CreateProcessW` (all access); shared with
    /// [`KEPT_PEERS`] once the `Child` is dropped.
    pub(super) process: Arc<OwnedHandle>,
    /// The process id, for display and the child's command line only.
    pub(super) pid: u32,
    /// The child's job object, if it could join one.
    pub(super) job: Option<Job>,
    /// The parent's copy of the child's end of the bootstrap pipe: the value
    /// the child duplicates out of us, so it must stay open until the child
    /// has done that or is gone (module docs).
    pub(super) bootstrap_peer: Mutex<Option<Peer>>,
    /// The exit status, once the OS has confirmed the exit.
    pub(super) status: OnceLock<RawStatus>,
}

/// The parent's side of the child taking its end of the bootstrap pipe.
pub(super) struct Peer {
    /// The parent's copy of the child's end: the handle value the child's
    /// command line names and the child duplicates out of this process.
    /// Only held, never used: its point is to stay open.
    #[allow(dead_code, reason = "held open for the child to duplicate")]
    pub(super) pipe: OwnedHandle,
    /// A manual-reset event the child duplicates out of this process too
    /// and sets once it has its own copy of `pipe` ([`open_bootstrap`](super::open_bootstrap)):
    /// from then on ours is no longer needed.
    pub(super) ack: OwnedHandle,
}

/// The bootstrap peer of a dropped [`Child`] that had not yet taken it,
/// with the child's process handle.
pub(super) struct KeptPeer {
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
/// of a `Child` and `settle` (a test hook), and waited for before this process exits
/// ([`before_exit`]). One list for the process, no thread: each entry holds
/// three handles (the pipe end, the ack event and the process handle, which
/// nothing else holds by then) for as long as its child is starting.
pub(super) static KEPT_PEERS: Mutex<Vec<KeptPeer>> = Mutex::new(Vec::new());

/// The longest [`before_exit`] waits, in all, for children still starting.
pub(super) const EXIT_GRACE: Duration = Duration::from_secs(10);

/// Hands `k` to [`KEPT_PEERS`], or closes it at once if it is already done;
/// prunes the list on the way.
pub(super) fn keep_peer(k: KeptPeer) {
    static HOOK: std::sync::Once = std::sync::Once::new();
    let mut kept = KEPT_PEERS.lock().unwrap_or_else(PoisonError::into_inner);
    kept.retain(|k| !k.done());
    if !k.done() {
        kept.push(k);
        drop(kept);
        // Returning from `main` runs the C runtime's exit handlers (not so
        // `std::process::exit`: see [`before_exit`]).
        HOOK.call_once(|| {
            let _ = crate::sys::at_exit(before_exit_hook);
        });
    }
}

/// Closes the kept peers whose children took them or exited.
pub(super) fn prune_kept_peers() {
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
pub(super) extern "C" fn before_exit_hook() {
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

    /// Ends the process with exit code `0x10000` ([`TERMINATED`](super::TERMINATED)).
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
    /// `Ok` if they had all exited. Without a job (see [`spawn`](super::spawn())), the same as
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
    /// reads on the [`Channel`](super::Channel) see end-of-file when the child exits. Done
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
