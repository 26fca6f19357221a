//! `Process<T>`: a typed call in a worker process, with Python's
//! `multiprocessing.Process` semantics.

use std::borrow::Borrow;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::codec::reply::Reply;
use crate::connection::{ChildEnd, Connection, Pipe};
use crate::deadline;
use crate::error::{Error, Kind, Result};
use crate::exit_code;
use crate::popen::{ChildOutput, Popen, PopenBuilder, ReplyProgress, Sentinel, Stdio, Watch};
use crate::status::ExitStatus;

/// Options for a [`Process`]: `&mut self` setters, then
/// [`spawn`](ProcessBuilder::spawn).
#[derive(Clone, Debug)]
pub struct ProcessBuilder {
    popen: PopenBuilder,
    name: Option<String>,
    daemon: bool,
}

impl Default for ProcessBuilder {
    fn default() -> Self {
        Self::new()
    }
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

impl ProcessBuilder {
    /// The largest result a [`Process`] accepts from its worker by default:
    /// 1 GiB (change it with [`max_result_len`](ProcessBuilder::max_result_len)).
    pub const DEFAULT_MAX_RESULT_LEN: u64 = 1 << 30;

    /// Default options: named `Process-N`, not daemonic, stdin the null
    /// device, stdout and stderr inherited, in this process's process group.
    pub fn new() -> Self {
        let mut popen = PopenBuilder::new();
        popen.want_reply(Self::DEFAULT_MAX_RESULT_LEN);
        ProcessBuilder {
            popen,
            name: None,
            daemon: false,
        }
    }

    /// The process's name, also what
    /// [`current_process_name`](crate::current_process_name) returns in it.
    pub fn name(&mut self, name: impl Into<String>) -> &mut Self {
        self.name = Some(name.into());
        self
    }

    /// A daemonic process is terminated when this process exits normally
    /// (returns from `main` or calls `std::process::exit`), as in Python.
    /// A parent killed outright runs no exit code: combine with
    /// [`kill_on_parent_death`](ProcessBuilder::kill_on_parent_death) for that.
    ///
    /// Windows: `std::process::exit` is `ExitProcess` there, which skips
    /// the C runtime's exit handlers, so a daemonic worker is instead put in
    /// a job object with `JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE` whose only
    /// handle this process holds (as with `kill_on_parent_death`): it ends
    /// however this process ends, killed outright included, which is
    /// stronger than Python.
    pub fn daemon(&mut self, yes: bool) -> &mut Self {
        self.daemon = yes;
        self.popen.daemon(yes);
        self
    }

    /// Kill the worker (as [`Process::kill`]) when the `Process` is dropped
    /// without having been joined (default: false; see the type's docs).
    pub fn kill_on_drop(&mut self, yes: bool) -> &mut Self {
        self.popen.kill_on_drop(yes);
        self
    }

    /// The worker dies when this process dies, however it dies; see
    /// [`PopenBuilder::kill_on_parent_death`] for how, per platform.
    pub fn kill_on_parent_death(&mut self, yes: bool) -> &mut Self {
        self.popen.kill_on_parent_death(yes);
        self
    }

    /// Where the worker's stdin comes from: [`Stdio::Null`] (the default)
    /// or [`Stdio::Inherit`]; see [`PopenBuilder::stdin`].
    pub fn stdin(&mut self, stdio: Stdio) -> &mut Self {
        self.popen.stdin(stdio);
        self
    }

    /// Unix: the worker leads a new process group, for
    /// [`kill_tree`](Process::kill_tree) (default: false, the worker stays
    /// in this process's group and gets the terminal's Ctrl-C with it). See
    /// [`PopenBuilder::own_process_group`].
    pub fn own_process_group(&mut self, yes: bool) -> &mut Self {
        self.popen.own_process_group(yes);
        self
    }

    /// Where the worker's stdout goes (default [`Stdio::Inherit`]);
    /// [`Stdio::Capture`] hands it back through [`Process::take_stdout`].
    pub fn stdout(&mut self, stdio: Stdio) -> &mut Self {
        self.popen.stdout(stdio);
        self
    }

    /// Where the worker's stderr goes (default [`Stdio::Inherit`]);
    /// [`Stdio::Capture`] hands it back through [`Process::take_stderr`].
    pub fn stderr(&mut self, stdio: Stdio) -> &mut Self {
        self.popen.stderr(stdio);
        self
    }

    /// Where the worker's stdout and stderr go: the same as
    /// [`stdout`](Self::stdout) and [`stderr`](Self::stderr) with `stdio`
    /// (stdin stays as [`stdin`](Self::stdin) set it).
    pub fn stdio(&mut self, stdio: Stdio) -> &mut Self {
        self.popen.stdio(stdio);
        self
    }

    /// Runs this program instead of the default (see
    /// [`set_executable`](crate::set_executable)).
    pub fn executable(&mut self, path: impl AsRef<Path>) -> &mut Self {
        self.popen.executable(path);
        self
    }

    /// The largest serialized result accepted from the worker; a larger
    /// one fails the join (default [`DEFAULT_MAX_RESULT_LEN`](ProcessBuilder::DEFAULT_MAX_RESULT_LEN)).
    pub fn max_result_len(&mut self, bytes: u64) -> &mut Self {
        self.popen.want_reply(bytes);
        self
    }

    /// Starts a worker running `entry(args)`; returns once the arguments
    /// are written to it. `args` is the argument or a reference to it, as
    /// for [`PopenBuilder::spawn`](crate::PopenBuilder::spawn): give it
    /// away or lend it. The worker runs this program's running build even
    /// after its file was replaced on disk, or the spawn fails with an
    /// error that says so (see [`executable`](crate::executable)).
    pub fn spawn<F, A, T>(&self, entry: F, args: impl Borrow<A>) -> Result<Process<T>>
    where
        F: Fn(A) -> T + Copy + 'static,
        A: Serialize,
        T: DeserializeOwned,
    {
        self.start(|popen| popen.spawn(entry, args))
    }

    /// Starts a worker running `entry((conn, args))`, where `conn` is the
    /// worker's end of a new duplex [`Connection`] to this process;
    /// returns the process and this process's end.
    ///
    /// On Unix this is the same as passing one end of a
    /// [`Pipe::duplex`](crate::Pipe::duplex) to [`spawn`](Self::spawn).
    /// On Windows the two ends also carry handles in messages, both ways
    /// ([`PassedHandle`](crate::PassedHandle)s, `Connection` ends, shared
    /// blocks, locks…), which a plain `Connection` can't there: each end
    /// knows the process at the other (this process holds the worker's
    /// process handle and does the `DuplicateHandle` into and out of it;
    /// see the crate's `codec::handles` design notes). A copy of either end
    /// passed on to another process is a plain end again there: sending
    /// handles on it fails with an error that says why.
    ///
    /// ```
    /// use multiproc::{Connection, PassedHandle};
    /// use std::io::{Read, Write};
    ///
    /// /// Receives a pipe's writing end and writes into it.
    /// fn write_into((conn, greeting): (Connection, String)) {
    ///     let end: PassedHandle = conn.recv().unwrap();
    ///     let mut w = std::io::PipeWriter::from(end.into_inner());
    ///     w.write_all(greeting.as_bytes()).unwrap();
    /// }
    /// multiproc::entry!(write_into);
    ///
    /// # fn main() -> Result<(), multiproc::Error> {
    /// # multiproc::init();
    /// let (mut p, conn) =
    ///     multiproc::Process::builder().spawn_connected(write_into, "hello".to_string())?;
    /// let (mut r, w) = std::io::pipe().unwrap();
    /// conn.send(&PassedHandle::new(w.into()))?; // our copy of `w` is dropped with it
    /// p.join()?;
    /// let mut got = String::new();
    /// r.read_to_string(&mut got).unwrap();
    /// assert_eq!(got, "hello");
    /// # Ok(()) }
    /// ```
    pub fn spawn_connected<F, A, T>(
        &self,
        entry: F,
        args: impl Borrow<A>,
    ) -> Result<(Process<T>, Connection)>
    where
        F: Fn((Connection, A)) -> T + Copy + 'static,
        A: Serialize,
        T: DeserializeOwned,
    {
        let (mine, theirs) = Pipe::duplex()?;
        // `(Connection, A)` as the entry reads it; the worker's end marked
        // as its channel to us. Our copy of it goes when this returns.
        let wire = (ChildEnd(&theirs), args.borrow());
        let process = self.start(|popen| popen.spawn_encoded(entry, &wire))?;
        drop(theirs);
        mine.carry_handles_with(&process.popen);
        Ok((process, mine))
    }

    /// Starts the worker with `spawn` and wraps it.
    fn start<T>(&self, spawn: impl FnOnce(&PopenBuilder) -> Result<Popen>) -> Result<Process<T>> {
        let name = self
            .name
            .clone()
            .unwrap_or_else(|| format!("Process-{}", COUNTER.fetch_add(1, Ordering::Relaxed) + 1));
        let mut popen = self.popen.clone();
        popen.name(name.clone());
        let mut popen = spawn(&popen)?;
        let (stdout, stderr) = (popen.take_stdout(), popen.take_stderr());
        Ok(Process {
            popen,
            stdout,
            stderr,
            name,
            stopped_by_us: AtomicBool::new(false),
            joined: false,
            _result: PhantomData,
        })
    }
}

/// A function call running in a worker process; `T` is its result.
///
/// # Drop
///
/// Dropping a `Process` without joining it neither waits for nor kills the
/// worker (unless it was built with
/// [`kill_on_drop`](ProcessBuilder::kill_on_drop), or it is
/// [daemonic](ProcessBuilder::daemon) and this process exits, or it dies
/// with its parent); on Unix it is reaped in the background once it exits.
///
/// # Example
///
/// ```
/// fn square(x: u64) -> u64 { x * x }
/// multiproc::entry!(square);
///
/// # fn main() -> Result<(), multiproc::Error> {
/// # multiproc::init();
/// let mut p = multiproc::Process::spawn(square, 7)?;
/// assert_eq!(p.join()?, 49);
/// # Ok(()) }
/// ```
pub struct Process<T> {
    popen: Popen,
    stdout: Option<ChildOutput>,
    stderr: Option<ChildOutput>,
    name: String,
    stopped_by_us: AtomicBool,
    joined: bool,
    _result: PhantomData<fn() -> T>,
}

impl Process<()> {
    /// A builder for more options; the same as [`ProcessBuilder::new`].
    /// (The builder is not generic: the result type comes from the entry
    /// given to [`ProcessBuilder::spawn`], so `Process::builder()` needs no
    /// type annotation.)
    ///
    /// ```
    /// fn square(x: u64) -> u64 { x * x }
    /// multiproc::entry!(square);
    ///
    /// # fn main() -> Result<(), multiproc::Error> {
    /// # multiproc::init();
    /// let mut p = multiproc::Process::builder().name("squarer").spawn(square, 7)?;
    /// assert_eq!(p.join()?, 49);
    /// # Ok(()) }
    /// ```
    pub fn builder() -> ProcessBuilder {
        ProcessBuilder::new()
    }
}

impl<T: DeserializeOwned> Process<T> {
    /// Starts `entry(args)` in a new worker with default options; `args`
    /// is the argument or a reference to it (see [`ProcessBuilder::spawn`]).
    pub fn spawn<F, A>(entry: F, args: impl Borrow<A>) -> Result<Process<T>>
    where
        F: Fn(A) -> T + Copy + 'static,
        A: Serialize,
    {
        ProcessBuilder::new().spawn(entry, args)
    }

    /// [`ProcessBuilder::spawn_connected`] with default options: starts
    /// `entry((conn, args))` with `conn` a [`Connection`] to this process
    /// that carries handles both ways on Windows too; returns the process
    /// and this process's end.
    pub fn spawn_connected<F, A>(entry: F, args: impl Borrow<A>) -> Result<(Process<T>, Connection)>
    where
        F: Fn((Connection, A)) -> T + Copy + 'static,
        A: Serialize,
    {
        ProcessBuilder::new().spawn_connected(entry, args)
    }

    /// Waits for the worker and returns the entry's result, or why there is
    /// none: a panic (with its message), an exit without a result, a
    /// signal, a termination by us, a failed bootstrap.
    ///
    /// As with CPython's `join()`, the `Process` stays usable afterwards:
    /// [`exitcode`](Process::exitcode) and
    /// [`exit_status`](Process::exit_status) report how the worker ended.
    /// The result is handed out once: a second `join` (or `join_timeout`)
    /// fails with [`ErrorKind::Usage`](crate::ErrorKind::Usage) ("the
    /// result was already taken").
    ///
    /// ```
    /// fn square(x: u64) -> u64 { x * x }
    /// multiproc::entry!(square);
    ///
    /// # fn main() -> Result<(), multiproc::Error> {
    /// # multiproc::init();
    /// let mut p = multiproc::Process::spawn(square, 7)?;
    /// assert_eq!(p.join()?, 49);
    /// assert_eq!(p.exitcode(), Some(0));
    /// assert_eq!(p.join().unwrap_err().kind(), multiproc::ErrorKind::Usage);
    /// # Ok(()) }
    /// ```
    pub fn join(&mut self) -> Result<T> {
        self.join_deadline(None)?
            .ok_or_else(|| Error::io("join", std::io::ErrorKind::TimedOut.into()))
    }

    /// Like [`join`](Process::join), waiting at most `timeout`: `Ok(None)`
    /// while the worker is still running. After it returned the result (or
    /// an error about the worker), later calls fail. Any `Duration` is
    /// valid: one too long for a deadline (`Duration::MAX`) waits forever.
    pub fn join_timeout(&mut self, timeout: Duration) -> Result<Option<T>> {
        self.join_deadline(deadline::deadline(timeout))
    }

    /// [`join`](Process::join) as a future, for async code on any
    /// executor: it resolves to what `join` returns, and the `Process`
    /// stays usable afterwards the same way.
    ///
    /// While it is pending, one thread of this crate shared by every
    /// process being joined this way (started by the first such join, then
    /// kept) waits for the worker's exit and for its result to arrive, and
    /// wakes the task: no thread per process or per future. The worker's
    /// result is read as it arrives, so a worker whose result is larger
    /// than the pipe's buffer is not left blocked writing it.
    ///
    /// Dropping the future stops waiting and nothing else: the worker
    /// keeps running, and a later `join` (blocking or not) picks up where
    /// this one left off.
    ///
    /// ```
    /// fn square(x: u64) -> u64 { x * x }
    /// multiproc::entry!(square);
    ///
    /// # fn main() -> Result<(), multiproc::Error> {
    /// # multiproc::init();
    /// let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    /// let mut p = multiproc::Process::spawn(square, 7)?;
    /// assert_eq!(rt.block_on(p.join_async())?, 49);
    /// assert_eq!(p.exitcode(), Some(0));
    /// # Ok(()) }
    /// ```
    pub fn join_async(&mut self) -> ProcessJoin<'_, T> {
        ProcessJoin {
            process: self,
            watch: None,
        }
    }

    fn join_deadline(&mut self, deadline: Option<Instant>) -> Result<Option<T>> {
        if self.joined {
            return Err(Error::new(Kind::AlreadyJoined));
        }
        match self.popen.read_reply(deadline)? {
            ReplyProgress::Pending => return Ok(None),
            ReplyProgress::Done => {}
            ReplyProgress::TooLarge { len, max } => {
                // Killed, it exits at once: wait for that, so the process
                // is queryable (`exitcode`) after the failed join.
                let _ = self.popen.kill();
                let _ = self.popen.wait(None);
                self.joined = true;
                return Err(Error::new(Kind::ResultTooLarge {
                    pid: self.pid(),
                    len,
                    max,
                }));
            }
        }
        let Some(status) = self.popen.wait(deadline::left(deadline))? else {
            return Ok(None);
        };
        self.joined = true;
        self.outcome(status).map(Some)
    }

    fn outcome(&mut self, status: ExitStatus) -> Result<T> {
        let pid = self.pid();
        match self.popen.take_reply() {
            Ok(Reply::Value(bytes)) => {
                crate::encode::from_bytes(&bytes).map_err(|e| e.into_error("the worker's result"))
            }
            Ok(Reply::Panic(report)) => Err(Error::new(Kind::Panicked { pid, report })),
            Ok(Reply::BadArgs(why) | Reply::BootFailed(why)) => {
                Err(Error::new(Kind::BootstrapFailed { pid, status, why }))
            }
            Ok(Reply::BadResult(why)) => Err(Error::new(Kind::ResultEncode {
                pid: Some(pid),
                status: Some(status),
                why,
            })),
            // A second `Started`, nothing, or nothing readable: no word
            // from the worker.
            Ok(Reply::Started) | Err(_) => {
                // A bootstrap code counts only if the worker never got as
                // far as `Started` (it could not use the channel); after
                // that, the code is the entry's.
                if let Some(why) = status
                    .code()
                    .filter(|c| (exit_code::BAD_COMMAND_LINE..=exit_code::BAD_PAYLOAD).contains(c))
                    .filter(|_| !self.popen.reply_started())
                    .and_then(exit_code::describe)
                {
                    return Err(Error::new(Kind::BootstrapFailed {
                        pid,
                        status,
                        why: why.to_string(),
                    }));
                }
                if self.stopped_by_us.load(Ordering::Relaxed) && !status.success() {
                    return Err(Error::new(Kind::Terminated { pid, status }));
                }
                Err(Error::new(Kind::NoResult { pid, status }))
            }
        }
    }
}

impl<T> Process<T> {
    /// The worker's process id.
    pub fn pid(&self) -> u32 {
        self.popen.pid()
    }

    /// The worker's captured stdout ([`Stdio::Capture`]), once.
    pub fn take_stdout(&mut self) -> Option<ChildOutput> {
        self.stdout.take()
    }

    /// The worker's captured stderr ([`Stdio::Capture`]), once.
    pub fn take_stderr(&mut self) -> Option<ChildOutput> {
        self.stderr.take()
    }

    /// The process's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the worker is still running.
    pub fn is_alive(&self) -> bool {
        matches!(self.popen.poll(), Ok(None))
    }

    /// Python's `exitcode`: `None` while running; the exit code; minus the
    /// signal number when a signal ended it (Unix), and `-15` (`-SIGTERM`)
    /// for a Windows process ended with `TERMINATE`, as CPython reports it.
    pub fn exitcode(&self) -> Option<i32> {
        self.popen
            .poll()
            .ok()
            .flatten()
            .map(|s| s.python_exitcode())
    }

    /// How the worker ended, once it has (without blocking).
    pub fn exit_status(&self) -> Option<ExitStatus> {
        self.popen.poll().ok().flatten()
    }

    /// Asks the worker to stop (SIGTERM; Windows: `TerminateProcess` with
    /// `0x10000`). `join` then reports it as terminated.
    pub fn terminate(&self) -> Result<()> {
        self.stopped_by_us.store(true, Ordering::Relaxed);
        self.popen.terminate()
    }

    /// Kills the worker (SIGKILL; Windows: as `terminate`).
    pub fn kill(&self) -> Result<()> {
        self.stopped_by_us.store(true, Ordering::Relaxed);
        self.popen.kill()
    }

    /// Terminates the worker and every process it started (Unix: its
    /// process group, SIGTERM; Windows: its job object). Call it before
    /// joining: once the worker is reaped its group id may be reused. On
    /// Unix the worker must lead its own process group
    /// ([`ProcessBuilder::own_process_group`]); otherwise this fails and
    /// signals nothing.
    pub fn terminate_tree(&self) -> Result<()> {
        self.stopped_by_us.store(true, Ordering::Relaxed);
        self.popen.terminate_tree()
    }

    /// Kills the worker and every process it started (SIGKILL to its
    /// process group; Windows: its job object). The same conditions as
    /// [`terminate_tree`](Process::terminate_tree).
    pub fn kill_tree(&self) -> Result<()> {
        self.stopped_by_us.store(true, Ordering::Relaxed);
        self.popen.kill_tree()
    }

    /// Something to pass to [`wait`](crate::wait) that is ready once the
    /// worker has exited.
    pub fn sentinel(&self) -> Sentinel<'_> {
        self.popen.sentinel()
    }
}

/// The future of [`Process::join_async`].
pub struct ProcessJoin<'a, T> {
    process: &'a mut Process<T>,
    /// The waiter thread's registration, while pending.
    watch: Option<Arc<Watch>>,
}

impl<T: DeserializeOwned> Future for ProcessJoin<'_, T> {
    type Output = Result<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        let this = self.get_mut();
        // Reads what arrived and looks at the exit, without waiting.
        match this.process.join_deadline(Some(Instant::now())) {
            Ok(Some(value)) => return Poll::Ready(Ok(value)),
            Err(e) => return Poll::Ready(Err(e)),
            Ok(None) => {}
        }
        match &this.watch {
            Some(w) if w.is_pending() => {
                w.set_waker(cx.waker());
                // Fired between the check and the new waker: the old
                // one was woken, maybe not this one.
                if !w.is_pending() {
                    cx.waker().wake_by_ref();
                }
            }
            _ => match this.process.popen.watch(cx.waker()) {
                Ok(w) => this.watch = Some(w),
                Err(e) => return Poll::Ready(Err(e)),
            },
        }
        Poll::Pending
    }
}

impl<T> Drop for ProcessJoin<'_, T> {
    fn drop(&mut self) {
        if let Some(w) = &self.watch {
            w.cancel();
        }
    }
}

impl<T> fmt::Debug for ProcessJoin<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessJoin")
            .field("pid", &self.process.pid())
            .finish()
    }
}

impl<T> fmt::Debug for Process<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Process")
            .field("name", &self.name)
            .field("pid", &self.pid())
            .finish()
    }
}
