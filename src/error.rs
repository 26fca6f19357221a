//! The crate's error type.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use crate::status::{ExitStatus, PanicReport};

/// Everything that can go wrong in multiproc.
///
/// An opaque type: ask it with the `is_*` predicates and accessors. Its
/// `Display` says what failed and why; [`std::error::Error::source`] gives
/// the underlying OS or serialization error where there is one.
pub struct Error {
    kind: Box<Kind>,
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
    #[error("`duplicate_for_child` was called while no child is being spawned on this thread")]
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
    #[error("pool worker {pid} died ({}) while running this task",
        status.map(|s| s.to_string()).unwrap_or_else(|| "status unknown".into()))]
    WorkerDied {
        pid: u32,
        status: Option<ExitStatus>,
    },
    #[error("the task ran past its timeout of {timeout:?}; pool worker {pid} was killed")]
    TaskTimeout {
        pid: u32,
        timeout: std::time::Duration,
    },
    #[error("the pool is broken: {0}")]
    PoolBroken(String),
    #[error("{0}")]
    PoolClosed(&'static str),
    #[error("{0}")]
    Usage(String),
    #[error("pool worker {pid} broke the pool protocol ({why}); it was killed")]
    WorkerProtocol { pid: u32, why: String },
    #[error("the process was already joined")]
    AlreadyJoined,
    #[error("worker process {pid} sent a result of {len} bytes, over the cap of {max}")]
    ResultTooLarge { pid: u32, len: u64, max: u64 },
    #[error("cannot decode {what}: {source}")]
    Decode {
        what: &'static str,
        source: postcard::Error,
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
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        source: io::Error,
    },
}

impl Error {
    pub(crate) fn new(kind: Kind) -> Self {
        Error {
            kind: Box::new(kind),
        }
    }

    pub(crate) fn io(what: &'static str, source: io::Error) -> Self {
        Error::new(Kind::Io { what, source })
    }

    /// The process could not be started at all (missing or unusable
    /// executable, no resources).
    pub fn is_spawn(&self) -> bool {
        matches!(*self.kind, Kind::Spawn { .. } | Kind::CurrentExe(_))
    }

    /// The worker started but exited (or stopped reading) before its
    /// bootstrap data was written; [`Error::exit_status`] tells how it ended.
    pub fn is_exited_early(&self) -> bool {
        matches!(
            *self.kind,
            Kind::ExitedEarly { .. } | Kind::Bootstrap { .. }
        )
    }

    /// The entry function is not registered with [`entry!`](crate::entry).
    pub fn is_unknown_entry(&self) -> bool {
        matches!(*self.kind, Kind::UnknownEntry(_))
    }

    /// The current executable can't act as a worker: `init()` was never
    /// called and no executable was set.
    pub fn is_not_initialized(&self) -> bool {
        matches!(*self.kind, Kind::NotInitialized)
    }

    /// [`duplicate_for_child`](crate::duplicate_for_child) was called
    /// outside a spawn.
    pub fn is_not_spawning(&self) -> bool {
        matches!(*self.kind, Kind::NotSpawning)
    }

    /// A value could not be serialized: in this process, a spawn's
    /// arguments, a message, or a pool task's input (through
    /// [`Pool::submit`](crate::Pool::submit), `map` and `imap` alike) —
    /// nothing was started or sent; or in the worker, the result of an
    /// entry or task that ran ([`Error::is_result_encode`] tells that case
    /// apart). The message says why: the one a `Serialize` impl gave to
    /// `serde::ser::Error::custom`, or, for a handle (a
    /// [`Connection`](crate::Connection)) that could not be passed to the
    /// child, the OS error, which [`source`](std::error::Error::source)
    /// also leads to.
    pub fn is_encode(&self) -> bool {
        matches!(*self.kind, Kind::Encode { .. } | Kind::ResultEncode { .. })
    }

    /// The entry function (or pool task) ran and returned, but its result
    /// could not be serialized in the worker (its `Serialize` failed); the
    /// message says why. A [`Process`](crate::Process) worker exits with
    /// [`exit_code::BAD_RESULT`](crate::exit_code::BAD_RESULT) then.
    pub fn is_result_encode(&self) -> bool {
        matches!(*self.kind, Kind::ResultEncode { .. })
    }

    /// The peer closed its end of the connection.
    pub fn is_eof(&self) -> bool {
        matches!(*self.kind, Kind::Eof)
    }

    /// A frame was over the receiving end's size cap (the connection is
    /// poisoned from then on).
    pub fn is_message_too_large(&self) -> bool {
        matches!(*self.kind, Kind::MessageTooLarge { .. })
    }

    /// The connection can't be used any more: an earlier frame was too
    /// large or cut off.
    pub fn is_poisoned(&self) -> bool {
        matches!(*self.kind, Kind::Poisoned(_))
    }

    /// `recv_bytes_into` got a buffer smaller than the message; the message
    /// stays queued. Returns the size needed.
    pub fn buffer_too_short(&self) -> Option<u64> {
        match *self.kind {
            Kind::BufferTooShort { needed, .. } => Some(needed),
            _ => None,
        }
    }

    /// The worker (or pool task) panicked; [`Error::panic_report`] has
    /// the message.
    pub fn is_panic(&self) -> bool {
        matches!(
            *self.kind,
            Kind::Panicked { .. } | Kind::TaskPanicked { .. }
        )
    }

    /// The panic's message and location, if the worker panicked.
    pub fn panic_report(&self) -> Option<&PanicReport> {
        match &*self.kind {
            Kind::Panicked { report, .. } | Kind::TaskPanicked { report } => Some(report),
            _ => None,
        }
    }

    /// A pool task failed because its worker died while running it;
    /// [`Error::pid`] and [`Error::exit_status`] say which and how.
    pub fn is_worker_died(&self) -> bool {
        matches!(*self.kind, Kind::WorkerDied { .. })
    }

    /// A pool task ran past the pool's task timeout.
    pub fn is_timeout(&self) -> bool {
        matches!(*self.kind, Kind::TaskTimeout { .. })
    }

    /// The pool can't run tasks: its initializer failed, or a worker could
    /// not be replaced.
    pub fn is_pool_broken(&self) -> bool {
        matches!(*self.kind, Kind::PoolBroken(_))
    }

    /// The pool was closed or terminated.
    pub fn is_pool_closed(&self) -> bool {
        matches!(*self.kind, Kind::PoolClosed(_))
    }

    /// The call itself was wrong, whatever the processes did (Python's
    /// `ValueError`): an argument out of range (`Pool::new(0)`,
    /// `max_tasks_per_child(0)`), an option the pool cannot honor
    /// (`Stdio::Capture` for pool workers), or a call out of order
    /// (`Pool::join` before `close`).
    pub fn is_usage(&self) -> bool {
        matches!(*self.kind, Kind::Usage(_))
    }

    /// A pool worker sent something that is not a pool message (an
    /// undecodable frame, one over the connection's size cap, a frame cut
    /// off): the pool killed it, and the task it was running failed with
    /// this error, which names the worker ([`Error::pid`]) and what it sent.
    pub fn is_protocol_violation(&self) -> bool {
        matches!(*self.kind, Kind::WorkerProtocol { .. })
    }

    /// The process id the error is about, where there is one.
    pub fn pid(&self) -> Option<u32> {
        match *self.kind {
            Kind::ExitedEarly { pid, .. }
            | Kind::Bootstrap { pid, .. }
            | Kind::ResultTooLarge { pid, .. }
            | Kind::Panicked { pid, .. }
            | Kind::BootstrapFailed { pid, .. }
            | Kind::Terminated { pid, .. }
            | Kind::NoResult { pid, .. }
            | Kind::WorkerDied { pid, .. }
            | Kind::TaskTimeout { pid, .. }
            | Kind::WorkerProtocol { pid, .. } => Some(pid),
            Kind::ResultEncode { pid, .. } => pid,
            _ => None,
        }
    }

    /// The worker was stopped by our own `terminate`/`kill`.
    pub fn is_terminated(&self) -> bool {
        matches!(*self.kind, Kind::Terminated { .. })
    }

    /// The worker ended without a result and not by our doing: an exit
    /// code, a signal, or another process's `TerminateProcess`.
    pub fn is_no_result(&self) -> bool {
        matches!(*self.kind, Kind::NoResult { .. })
    }

    /// The worker's bootstrap failed (see [`exit_code`](crate::exit_code)).
    pub fn is_bootstrap_failure(&self) -> bool {
        matches!(*self.kind, Kind::BootstrapFailed { .. })
    }

    /// A result could not be decoded, or was over its size cap, or a pool
    /// task's input could not be decoded in the worker. (An input that
    /// cannot be serialized in this process is [`Error::is_encode`], through
    /// every pool call alike.)
    pub fn is_decode(&self) -> bool {
        matches!(
            *self.kind,
            Kind::Decode { .. } | Kind::ResultTooLarge { .. } | Kind::TaskBadArgs(_)
        )
    }

    /// How the worker ended, when the error is about its end.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        match *self.kind {
            Kind::ExitedEarly { status, .. }
            | Kind::BootstrapFailed { status, .. }
            | Kind::Terminated { status, .. }
            | Kind::NoResult { status, .. } => Some(status),
            Kind::WorkerDied { status, .. } | Kind::ResultEncode { status, .. } => status,
            _ => None,
        }
    }

    /// The underlying OS error, if this is one.
    pub fn io_error(&self) -> Option<&io::Error> {
        match &*self.kind {
            Kind::Spawn { source, .. }
            | Kind::Bootstrap { source, .. }
            | Kind::CurrentExe(source)
            | Kind::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.kind, f)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.kind, f)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&*self.kind)
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        let kind = match e.io_error() {
            Some(src) => src.kind(),
            None if e.is_exited_early() => io::ErrorKind::BrokenPipe,
            None if e.is_eof() => io::ErrorKind::UnexpectedEof,
            None if e.is_encode() => io::ErrorKind::InvalidData,
            None if e.is_usage() => io::ErrorKind::InvalidInput,
            None => io::ErrorKind::Other,
        };
        io::Error::new(kind, e)
    }
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

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
