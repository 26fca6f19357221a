//! What went wrong: the public [`ErrorKind`], the private `Kind` that
//! an [`Error`] holds (with its message), and [`EncodeError`].

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use super::Error;
use crate::status::{ExitStatus, PanicReport};

/// What kind of error an [`Error`] is, as [`std::io::ErrorKind`] is for
/// [`std::io::Error`]: [`Error::kind`] returns it.
///
/// New kinds may be added (hence `#[non_exhaustive]`): a `match` needs a
/// `_` arm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The process could not be started at all: the executable is missing
    /// or unusable, the current executable can't be found, or the OS is out
    /// of resources. [`Error::io_error`] has the OS error. Also when this
    /// program's own executable was replaced or removed on disk since it
    /// started and the running build can't be started any more (Windows
    /// when the renamed file can't be found, as under Wine; macOS and the
    /// other Unix systems but Linux; the message says so,
    /// and [`Error::io_error`] is of kind [`io::ErrorKind::NotFound`]): see
    /// [`executable`](crate::executable).
    Spawn,
    /// The child started but exited, or stopped reading, before its
    /// bootstrap data was written; [`Error::exit_status`] tells how it
    /// ended when it did.
    ExitedEarly,
    /// The worker's bootstrap failed: it said why (the message has it), or
    /// it exited with a code from 200–208 before its bootstrap was through
    /// (see [`exit_code`](crate::exit_code)). The entry did not run.
    BootstrapFailed,
    /// This process never called [`init`](crate::init) and names no
    /// executable ([`set_executable`](crate::set_executable)), so it can't
    /// spawn itself as a worker.
    ///
    /// ```
    /// fn noop(_: ()) {}
    /// multiproc::entry!(noop);
    ///
    /// // This program never calls `multiproc::init()`.
    /// let err = multiproc::Process::spawn(noop, ()).unwrap_err();
    /// assert_eq!(err.kind(), multiproc::ErrorKind::NotInitialized);
    /// ```
    NotInitialized,
    /// The function is not registered with [`entry!`](crate::entry).
    UnknownEntry,
    /// [`pass_handle`](crate::pass_handle) (or its former name `duplicate_for_child`) was called
    /// outside a spawn, a pool task or a message.
    NotSpawning,
    /// A value could not be serialized in this process: a spawn's
    /// arguments, a message, a pool task's input or initializer arguments.
    /// Nothing was started or sent.
    Encode,
    /// The entry function or pool task ran and returned, but its result
    /// could not be serialized in the worker.
    ResultEncode,
    /// A result or message could not be decoded here, or a pool task's
    /// input could not be decoded in the worker (a
    /// [`Process`](crate::Process) worker reports that as
    /// [`BootstrapFailed`](ErrorKind::BootstrapFailed)).
    Decode,
    /// A [`Process`](crate::Process) result was over its cap
    /// ([`ProcessBuilder::max_result_len`](crate::ProcessBuilder::max_result_len));
    /// the worker was killed.
    ResultTooLarge,
    /// The peer closed its end of the [`Connection`](crate::Connection).
    Eof,
    /// A frame was over the receiving end's size cap; the connection is
    /// poisoned from then on. Also an item too large ever to fit in a
    /// [`Queue`](crate::Queue) (its `max_bytes`); the item was not put.
    MessageTooLarge,
    /// The connection can't be used any more: an earlier frame was too
    /// large or cut off.
    Poisoned,
    /// [`Connection::recv_bytes_into`](crate::Connection::recv_bytes_into)
    /// got a buffer smaller than the message, which stays queued;
    /// [`Error::buffer_too_short`] gives the size needed.
    BufferTooShort,
    /// The entry function or pool task panicked; [`Error::panic_report`]
    /// has the message and location.
    Panic,
    /// The worker ended without a result and not by our doing: an exit
    /// with any code (after its bootstrap), a signal, or another process's
    /// `TerminateProcess`. [`Error::exit_status`] tells which.
    NoResult,
    /// The worker was stopped by our own `terminate`/`kill`.
    Terminated,
    /// A pool task failed because its worker died while running it.
    WorkerDied,
    /// A pool task ran past its time limit (the pool's
    /// [`task_timeout`](crate::PoolBuilder::task_timeout) or its own,
    /// [`Task::timeout`](crate::Task::timeout)); its worker was killed.
    Timeout,
    /// A pool task was cancelled with
    /// [`AsyncResult::cancel`](crate::AsyncResult::cancel) before it
    /// finished: it never ran, or its worker was killed while it ran.
    Cancelled,
    /// A pool worker sent something that is not a pool message; the pool
    /// killed it.
    ProtocolViolation,
    /// The pool can't run tasks: its initializer failed, or workers could
    /// not be started or replaced.
    PoolBroken,
    /// The pool was closed or terminated before the work could run.
    PoolClosed,
    /// A lock's last holder died holding it (its process was killed, or
    /// its thread ended with the guard alive): the data it guards may be
    /// half updated. The [`LockError`](crate::LockError) that says so
    /// carries the guard — the caller holds the lock —;
    /// [`LockError::into_guard`](crate::LockError::into_guard) marks the
    /// lock consistent and returns it. Until then every acquirer gets this
    /// error. (Not detected on macOS: see the crate docs' "Sharing state".)
    OwnerDied,
    /// A [`Barrier`](crate::Barrier) is broken: a registered party died,
    /// a wait timed out, or someone called
    /// [`abort`](crate::Barrier::abort). Every waiter gets this error,
    /// and so does every later wait (a broken barrier stays broken).
    BrokenBarrier,
    /// A [`Queue`](crate::Queue) had no room for the item before the
    /// deadline ([`try_put`](crate::Queue::try_put),
    /// [`put_timeout`](crate::Queue::put_timeout); Python's `queue.Full`).
    /// The item was not put.
    Full,
    /// A [`Queue`](crate::Queue) had no item before the deadline
    /// ([`try_get`](crate::Queue::try_get),
    /// [`get_timeout`](crate::Queue::get_timeout); Python's
    /// `queue.Empty`).
    Empty,
    /// A [`Queue`](crate::Queue) was closed ([`close`](crate::Queue::close),
    /// by any process): a put is refused, and a get says so once every
    /// item put before the close was taken (end of data).
    QueueClosed,
    /// The call itself was wrong, whatever the processes did (Python's
    /// `ValueError`): an argument out of range, an option that can't be
    /// honored, a call out of order or repeated (asking for a result
    /// already taken), a send on a read-only end.
    Usage,
    /// A [`Listener`](crate::Listener)'s or [`Client`](crate::Client)'s
    /// authentication handshake failed: the keys differ, the peer sent
    /// something that is not the handshake (not a multiproc peer, or a
    /// corrupt stream), or it did not finish within the handshake timeout.
    /// The message says which; the connection was closed.
    Authentication,
    /// Another OS error (creating a pipe, waiting, reading, sending a
    /// signal); [`Error::io_error`] has it.
    Io,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum Kind {
    #[error("cannot start worker process `{}`: {source}", exe.display())]
    Spawn { exe: PathBuf, source: io::Error },
    #[error("worker process {pid} exited with {status} before its bootstrap data was written")]
    ExitedEarly { pid: u32, status: ExitStatus },
    #[error("cannot send the bootstrap data to worker process {pid}: {source}")]
    Bootstrap { pid: u32, source: io::Error },
    #[error(
        "entry `{0}` is not registered: add `multiproc::entry!(...)` naming it \
         (a plain `fn` item; closures cannot cross processes)"
    )]
    UnknownEntry(String),
    #[error(
        "this process never called `multiproc::init()`, so its executable cannot act as a \
         worker (it would run `main` again instead): call `multiproc::init()` first thing in \
         `main` (`multiproc::test_support!()` in test binaries), or name a worker host with \
         `multiproc::set_executable`"
    )]
    NotInitialized,
    #[error("cannot find the current executable (use `multiproc::set_executable`): {0}")]
    CurrentExe(#[source] io::Error),
    #[error("`pass_handle` (`duplicate_for_child`) was called while no child is being spawned and no pool task or message is being serialized on this thread")]
    NotSpawning,
    #[error("cannot serialize the arguments for `{entry}`: {source}")]
    Encode { entry: String, source: EncodeError },
    #[error("the peer closed the connection (end of file)")]
    Eof,
    #[error("message of {len} bytes is over this connection's cap of {max} bytes")]
    MessageTooLarge { len: u64, max: u64 },
    #[error("the connection is unusable: {0}")]
    Poisoned(String),
    #[error("the buffer holds {have} bytes, the message needs {needed}")]
    BufferTooShort { needed: u64, have: usize },
    #[error("{0}")]
    WrongDirection(&'static str),
    #[error("task panicked in a pool worker: {}{}", report.message,
        report.location.as_deref().map(|l| format!(" at {l}")).unwrap_or_default())]
    TaskPanicked { report: PanicReport },
    #[error("the task's input could not be used: {0}")]
    TaskBadArgs(String),
    #[error("{}", result_encode_message(*pid, why))]
    ResultEncode {
        pid: Option<u32>,
        status: Option<ExitStatus>,
        why: String,
    },
    #[error("pool worker {pid}{} died ({}{}) while running this task{}",
        host.as_deref().map(|h| format!(" on host {h}")).unwrap_or_default(),
        cause.as_deref().map(|c| format!("{c}; ")).unwrap_or_default(),
        status.map(|s| s.to_string()).unwrap_or_else(|| "status unknown".into()),
        own_pid.filter(|p| p != pid).map(|p| format!(
            " ({pid} is its launcher command's pid; the worker's own was {p})"
        )).unwrap_or_default())]
    WorkerDied {
        pid: u32,
        /// Where the worker ran, for one started by a launcher command.
        host: Option<std::sync::Arc<str>>,
        /// The pid a launched worker said it has (its own; `pid` is its
        /// launcher command's).
        own_pid: Option<u32>,
        status: Option<ExitStatus>,
        /// Why the pool gave a launched worker up (no heartbeat, its
        /// launcher command gone), when it did.
        cause: Option<String>,
    },
    #[error("the task ran past its timeout of {timeout:?}; pool worker {pid} was killed")]
    TaskTimeout {
        pid: u32,
        timeout: std::time::Duration,
    },
    #[error("the task was cancelled")]
    Cancelled,
    #[error("the pool is broken: {why}")]
    PoolBroken {
        why: String,
        /// The error behind it (a worker's spawn), whole; `Error::source`
        /// gives it as itself (an `Error`, not the `Arc`).
        cause: Option<Arc<Error>>,
    },
    #[error("{0}")]
    PoolClosed(&'static str),
    #[error("{0}")]
    Usage(String),
    #[error("the last holder of this {what} died holding it: what it guards may be inconsistent")]
    OwnerDied { what: &'static str },
    #[error("the barrier is broken: {0}")]
    BrokenBarrier(String),
    #[error("the queue is full")]
    QueueFull,
    #[error("the queue is empty")]
    QueueEmpty,
    #[error("the queue is closed")]
    QueueClosed,
    #[error("an item of {len} bytes can never fit in this queue, whose largest item is {max} bytes (raise its max_bytes)")]
    ItemTooLarge { len: u64, max: u64 },
    #[error("{0}")]
    QueueCorrupt(String),
    #[error("pool worker {pid} broke the pool protocol ({why}); it was killed")]
    WorkerProtocol { pid: u32, why: String },
    #[error("the result was already taken (joined before)")]
    AlreadyJoined,
    #[error("worker process {pid} sent a result of {len} bytes, over the cap of {max}")]
    ResultTooLarge { pid: u32, len: u64, max: u64 },
    #[error("cannot decode {what}: {}", why.clone().unwrap_or_else(|| source.to_string()))]
    Decode {
        what: &'static str,
        source: postcard::Error,
        /// What a `Deserialize` impl that refused said (postcard drops it).
        why: Option<String>,
    },
    #[error("worker process {pid} panicked: {}{}", report.message,
        report.location.as_deref().map(|l| format!(" at {l}")).unwrap_or_default())]
    Panicked { pid: u32, report: PanicReport },
    #[error("worker process {pid} failed to start ({status}): {why}")]
    BootstrapFailed {
        pid: u32,
        status: ExitStatus,
        why: String,
    },
    #[error("worker process {pid} was stopped by us ({status})")]
    Terminated { pid: u32, status: ExitStatus },
    #[error("worker process {pid} ended with {status} without a result")]
    NoResult { pid: u32, status: ExitStatus },
    #[error("authentication failed: {0}")]
    Auth(String),
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        source: io::Error,
    },
}

fn result_encode_message(pid: Option<u32>, why: &str) -> String {
    match pid {
        Some(pid) => format!(
            "worker process {pid} ran the entry, but its result cannot be serialized: {why}"
        ),
        None => format!("the task ran, but its result cannot be serialized: {why}"),
    }
}

/// Why a value could not be serialized (see `encode.rs`, which makes it).
#[derive(Clone, Debug)]
pub(crate) enum EncodeError {
    /// postcard's own error (e.g. a sequence of unknown length).
    Postcard(postcard::Error),
    /// A `Serialize` impl failed with this message.
    Custom(String),
    /// A handle in the value could not be passed to the child.
    Handle(Arc<Error>),
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::Postcard(e) => fmt::Display::fmt(e, f),
            EncodeError::Custom(m) => f.write_str(m),
            EncodeError::Handle(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl std::error::Error for EncodeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            EncodeError::Postcard(e) => Some(e),
            EncodeError::Custom(_) => None,
            // Its message is this one's already: go on with what caused it
            // (the OS error).
            EncodeError::Handle(e) => std::error::Error::source(&**e),
        }
    }
}
