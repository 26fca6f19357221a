//! `Popen`: one worker process, as CPython's `popen_spawn_win32.Popen`.

use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::codec::reply::{Reply, ReplyError, ReplyReader};
use crate::deadline;
use crate::error::{Error, Result};
use crate::status::ExitStatus;
use crate::sys;

mod builder;
mod daemons;
mod executable;
mod waiter;

pub(crate) use waiter::Watch;

pub use builder::{PopenBuilder, Stdio};
pub use executable::{executable, reset_executable, set_executable};

/// A running worker process: CPython's `Popen` for the spawn start method.
///
/// # Drop
///
/// Dropping a `Popen` (or calling [`close`](Popen::close)) releases its
/// handles but does **not** kill the worker, as with `std::process::Child`;
/// ask for that with [`PopenBuilder::kill_on_drop`]. On Unix a worker that
/// is still running when dropped is reaped by a background thread once it
/// exits, so no zombie stays behind. Dropping never fails: if that thread
/// can't be started (the fd or thread limit is reached), the worker is
/// listed and reaped at a later drop or spawn, which try again; until then
/// it may stay a zombie once it exits.
/// A worker dropped right after `spawn` still starts (see the crate docs'
/// caveats for the one exception on Windows).
pub struct Popen {
    child: Arc<sys::Child>,
    channel: Option<sys::Channel>,
    /// The worker's replies, when it was asked for them.
    reply: Option<ReplyReader>,
    /// The read ends of captured stdout / stderr, until taken.
    output: [Option<ChildOutput>; 2],
    kill_on_drop: bool,
}

/// How far [`Popen::read_reply`] got.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ReplyProgress {
    /// The deadline passed first.
    Pending,
    /// The final reply is in, or the worker closed its channel: see
    /// [`Popen::take_reply`].
    Done,
    /// The worker announced a reply over the cap; nothing more can be read.
    TooLarge {
        /// The announced length.
        len: u64,
        /// The cap.
        max: u64,
    },
}

impl Popen {
    /// A builder for more options; the same as [`PopenBuilder::new`].
    pub fn builder() -> PopenBuilder {
        PopenBuilder::new()
    }

    /// Starts a worker with default options; see [`PopenBuilder::spawn`].
    ///
    /// ```
    /// # fn main() -> Result<(), multiproc::Error> {
    /// fn exit_with(code: i32) { std::process::exit(code) }
    /// multiproc::entry!(exit_with);
    /// # multiproc::init();
    /// let p = multiproc::Popen::spawn(exit_with, 42)?;
    /// assert_eq!(p.wait(None)?.unwrap().code(), Some(42));
    /// # Ok(()) }
    /// ```
    pub fn spawn<F, A, R>(entry: F, args: impl Borrow<A>) -> Result<Popen>
    where
        F: Fn(A) -> R + Copy + 'static,
        A: Serialize,
    {
        PopenBuilder::new().spawn(entry, args)
    }

    /// The worker's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the worker to exit, at most `timeout` (forever with
    /// `None`, or with a timeout too long to be a deadline, such as
    /// `Duration::MAX`). `Ok(None)` means it is still running. The status is
    /// recorded only once the OS confirmed the exit, and kept: later calls
    /// return it at once. Safe to call from several threads, also while
    /// another calls [`terminate`](Popen::terminate).
    pub fn wait(&self, timeout: Option<Duration>) -> Result<Option<ExitStatus>> {
        let st = self
            .child
            .wait(timeout)
            .map_err(|e| Error::io("cannot wait for the worker", e))?;
        if st.is_some() {
            self.child.release_bootstrap_peer();
        }
        Ok(st.map(ExitStatus))
    }

    /// The exit status if the worker has exited, without blocking.
    pub fn poll(&self) -> Result<Option<ExitStatus>> {
        self.wait(Some(Duration::ZERO))
    }

    /// Asks the worker to stop: SIGTERM on Unix; on Windows
    /// `TerminateProcess` with exit code [`exit_code::TERMINATE`](crate::exit_code::TERMINATE).
    ///
    /// Records no status (the process may still be running; use
    /// [`wait`](Popen::wait)). Calling it again, or after the worker
    /// exited, is not an error.
    pub fn terminate(&self) -> Result<()> {
        self.child
            .terminate()
            .map_err(|e| Error::io("cannot terminate the worker", e))
    }

    /// Kills the worker: SIGKILL on Unix; on Windows the same as
    /// [`terminate`](Popen::terminate), which cannot be ignored there.
    pub fn kill(&self) -> Result<()> {
        self.child
            .kill()
            .map_err(|e| Error::io("cannot kill the worker", e))
    }

    /// Terminates the worker and everything it started (its process group
    /// on Unix, its job object on Windows).
    ///
    /// On Unix the worker must lead its own process group
    /// ([`PopenBuilder::own_process_group`]); otherwise this fails (with an
    /// error of kind `Unsupported` as its source) and signals nothing.
    pub fn terminate_tree(&self) -> Result<()> {
        self.child
            .terminate_tree()
            .map_err(|e| Error::io("cannot terminate the worker's process tree", e))
    }

    /// Kills the worker and everything it started (see
    /// [`terminate_tree`](Self::terminate_tree)).
    pub fn kill_tree(&self) -> Result<()> {
        self.child
            .kill_tree()
            .map_err(|e| Error::io("cannot kill the worker's process tree", e))
    }

    /// Something to pass to [`wait`](crate::wait) that is ready once the
    /// worker has exited.
    pub fn sentinel(&self) -> Sentinel<'_> {
        Sentinel(self)
    }

    /// A watch on the worker's exit that lives on after this `Popen` is
    /// borrowed (or gone): see [`ExitWatch`].
    pub(crate) fn exit_watch(&self) -> ExitWatch {
        ExitWatch(Arc::clone(&self.child))
    }

    /// The worker's captured stdout ([`Stdio::Capture`]), once.
    pub fn take_stdout(&mut self) -> Option<ChildOutput> {
        self.output[0].take()
    }

    /// The worker's captured stderr ([`Stdio::Capture`]), once.
    pub fn take_stderr(&mut self) -> Option<ChildOutput> {
        self.output[1].take()
    }

    /// Releases the handles; the same as dropping (see the type's docs).
    pub fn close(self) {}

    /// Reads the worker's replies until the final one is in or the worker
    /// closed its channel (or exited: whoever else holds its end), waiting
    /// until `deadline` at most. `Done` at once for a worker that sends no
    /// replies.
    pub(crate) fn read_reply(&mut self, deadline: Option<Instant>) -> Result<ReplyProgress> {
        let Some(reader) = self.reply.as_mut() else {
            return Ok(ReplyProgress::Done);
        };
        let mut chunk = Vec::new();
        while !reader.is_done() {
            let Some(channel) = &self.channel else {
                reader.close();
                break;
            };
            if chunk.is_empty() {
                chunk = vec![0u8; 64 * 1024];
            }
            let left = deadline::left(deadline);
            match channel
                .read_timeout(Some(&self.child), &mut chunk, left)
                .map_err(|e| Error::io("cannot read the worker's result", e))?
            {
                None => return Ok(ReplyProgress::Pending),
                Some(0) => reader.close(),
                Some(n) => {
                    if let Err(ReplyError::TooLarge { len, max }) = reader.push(&chunk[..n]) {
                        return Ok(ReplyProgress::TooLarge { len, max });
                    }
                }
            }
        }
        Ok(ReplyProgress::Done)
    }

    /// Has `waker` woken (by the process-wide waiter thread, see
    /// `waiter.rs`) once the worker exited or, while its reply is not all
    /// in, its channel has something to read.
    pub(crate) fn watch(&self, waker: &std::task::Waker) -> Result<std::sync::Arc<Watch>> {
        let reading = self.reply.as_ref().is_some_and(|r| !r.is_done());
        let channel = self
            .channel
            .as_ref()
            .filter(|_| reading)
            .and_then(sys::Channel::as_raw);
        waiter::register(channel, self.exit_watch(), waker)
            .map_err(|e| Error::io("cannot watch the worker for an async join", e))
    }

    /// Whether the worker said its bootstrap is through (only a worker
    /// asked for replies says so).
    pub(crate) fn reply_started(&self) -> bool {
        self.reply.as_ref().is_some_and(ReplyReader::started)
    }

    /// The worker's final reply, once [`read_reply`](Popen::read_reply)
    /// is done; taken (a second call finds it missing).
    pub(crate) fn take_reply(&mut self) -> std::result::Result<Reply, ReplyError> {
        match self.reply.as_mut() {
            Some(reader) => reader.finish(),
            None => Err(ReplyError::Missing),
        }
    }

    /// Kills and reaps a child whose spawn failed, then returns `err`.
    fn abandon(self, err: Error) -> Error {
        let _ = self.child.kill();
        let _ = self.child.wait(Some(Duration::from_secs(5)));
        drop(self);
        err
    }
}

/// A borrowed handle on a worker that [`wait`](crate::wait) can watch for
/// its exit; from [`Popen::sentinel`] or
/// [`Process::sentinel`](crate::Process::sentinel).
#[derive(Clone, Copy, Debug)]
pub struct Sentinel<'a>(&'a Popen);

impl Sentinel<'_> {
    /// Something that becomes ready when the worker exits (pidfd /
    /// process handle); `None` where the OS has no such thing (then poll
    /// [`exited`](Self::exited)).
    pub(crate) fn handle(&self) -> Option<sys::BorrowedRaw<'_>> {
        self.0.child.sentinel()
    }

    /// Whether the worker has exited (without blocking).
    pub(crate) fn exited(&self) -> bool {
        matches!(self.0.poll(), Ok(Some(_)))
    }
}

/// A worker's exit, watched by someone that doesn't hold its [`Popen`]
/// (a pool worker's reader thread, through
/// [`Connection::watch_peer`](crate::Connection)): it keeps the process
/// handle / pidfd open, so it stays valid (and the pid unused) for as long
/// as the watch lives, whatever happens to the `Popen`.
#[derive(Clone)]
pub(crate) struct ExitWatch(Arc<sys::Child>);

impl ExitWatch {
    /// Something that becomes ready when the worker exits (pidfd /
    /// process handle); `None` where the OS has no such thing.
    pub(crate) fn handle(&self) -> Option<sys::BorrowedRaw<'_>> {
        self.0.sentinel()
    }
}

impl fmt::Debug for ExitWatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ExitWatch").field(&self.0.id()).finish()
    }
}

/// A worker's captured stdout or stderr ([`Stdio::Capture`]): read it to
/// the end to get everything the worker wrote (end of file once it, and
/// every process it passed the stream on to, exited).
pub struct ChildOutput(sys::Channel);

impl fmt::Debug for ChildOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ChildOutput")
    }
}

impl std::io::Read for ChildOutput {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        Ok(self.0.read_timeout(None, buf, None)?.unwrap_or(0))
    }
}
impl fmt::Debug for Popen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Popen").field("pid", &self.pid()).finish()
    }
}

impl Drop for Popen {
    fn drop(&mut self) {
        if self.kill_on_drop {
            let _ = self.child.kill();
        }
        if Arc::strong_count(&self.child) > 1 {
            // Someone keeps the child (the daemon list, until this process
            // exits), so its own drop, which hands it to the reaper, won't
            // run now: have it reaped once it exits all the same.
            sys::reap_in_background(&self.child);
        }
    }
}
