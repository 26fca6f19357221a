//! The crate's error type.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use crate::status::{ExitStatus, PanicReport};

/// Everything that can go wrong in multiproc.
///
/// An opaque type, as [`std::io::Error`]: [`Error::kind`] says what went
/// wrong as an [`ErrorKind`] to `match` on, the `is_*` predicates are
/// shorthands for it, and the accessors give the details
/// ([`Error::pid`], [`Error::exit_status`], [`Error::panic_report`],
/// [`Error::io_error`], [`Error::buffer_too_short`]). Its `Display` says what
/// failed and why; [`std::error::Error::source`] gives the underlying OS or
/// serialization error where there is one. `From<Error> for io::Error`
/// keeps the `Error` inside (get it back with [`io::Error::get_ref`]).
///
/// | [`ErrorKind`] | predicate | raised by |
/// |---|---|---|
/// | [`Spawn`](ErrorKind::Spawn) | [`is_spawn`](Error::is_spawn) | any spawn: the executable can't be found or started, or was replaced on disk |
/// | [`ExitedEarly`](ErrorKind::ExitedEarly) | [`is_exited_early`](Error::is_exited_early) | any spawn: the child ended before taking its bootstrap data |
/// | [`BootstrapFailed`](ErrorKind::BootstrapFailed) | [`is_bootstrap_failure`](Error::is_bootstrap_failure) | [`Process::join`](crate::Process::join): the worker could not start the entry |
/// | [`NotInitialized`](ErrorKind::NotInitialized) | [`is_not_initialized`](Error::is_not_initialized) | any spawn, before [`init`](crate::init) |
/// | [`UnknownEntry`](ErrorKind::UnknownEntry) | [`is_unknown_entry`](Error::is_unknown_entry) | any spawn or pool call naming an unregistered function |
/// | [`NotSpawning`](ErrorKind::NotSpawning) | [`is_not_spawning`](Error::is_not_spawning) | [`pass_handle`](crate::pass_handle) outside a spawn, pool task or message |
/// | [`Encode`](ErrorKind::Encode) | [`is_encode`](Error::is_encode) | arguments, messages, pool inputs that can't be serialized here |
/// | [`ResultEncode`](ErrorKind::ResultEncode) | [`is_result_encode`](Error::is_result_encode), [`is_encode`](Error::is_encode) | `join` or a pool result: the worker's result can't be serialized |
/// | [`Decode`](ErrorKind::Decode) | [`is_decode`](Error::is_decode) | a result or message that can't be decoded; a pool task's input the worker can't decode |
/// | [`ResultTooLarge`](ErrorKind::ResultTooLarge) | [`is_decode`](Error::is_decode) | [`Process::join`](crate::Process::join): a result over its cap |
/// | [`Eof`](ErrorKind::Eof) | [`is_eof`](Error::is_eof) | [`Connection`](crate::Connection): the peer closed its end |
/// | [`MessageTooLarge`](ErrorKind::MessageTooLarge) | [`is_message_too_large`](Error::is_message_too_large) | [`Connection`](crate::Connection): a frame over the cap; [`Queue::put`](crate::Queue::put): an item larger than the whole queue |
/// | [`Poisoned`](ErrorKind::Poisoned) | [`is_poisoned`](Error::is_poisoned) | [`Connection`](crate::Connection): unusable after a bad frame |
/// | [`BufferTooShort`](ErrorKind::BufferTooShort) | [`buffer_too_short`](Error::buffer_too_short) | [`Connection::recv_bytes_into`](crate::Connection::recv_bytes_into) |
/// | [`Panic`](ErrorKind::Panic) | [`is_panic`](Error::is_panic) | `join` or a pool result: the entry or task panicked |
/// | [`NoResult`](ErrorKind::NoResult) | [`is_no_result`](Error::is_no_result) | [`Process::join`](crate::Process::join): the worker exited or was killed, not by us |
/// | [`Terminated`](ErrorKind::Terminated) | [`is_terminated`](Error::is_terminated) | [`Process::join`](crate::Process::join): we stopped the worker |
/// | [`WorkerDied`](ErrorKind::WorkerDied) | [`is_worker_died`](Error::is_worker_died) | a pool result: the worker died running the task |
/// | [`Timeout`](ErrorKind::Timeout) | [`is_timeout`](Error::is_timeout) | a pool result: the task ran past the pool's task timeout |
/// | [`ProtocolViolation`](ErrorKind::ProtocolViolation) | [`is_protocol_violation`](Error::is_protocol_violation) | a pool result: the worker sent garbage |
/// | [`PoolBroken`](ErrorKind::PoolBroken) | [`is_pool_broken`](Error::is_pool_broken) | the pool: initializer failed, workers can't be replaced |
/// | [`PoolClosed`](ErrorKind::PoolClosed) | [`is_pool_closed`](Error::is_pool_closed) | the pool: work after `close` or `terminate` |
/// | [`OwnerDied`](ErrorKind::OwnerDied) | [`is_owner_died`](Error::is_owner_died) | acquiring a [`Lock`](crate::Lock), [`RLock`](crate::RLock), [`Condition`](crate::Condition) or [`Value`](crate::Value): its last holder died holding it ([`LockError`](crate::LockError) carries the guard) |
/// | [`BrokenBarrier`](ErrorKind::BrokenBarrier) | [`is_broken_barrier`](Error::is_broken_barrier) | [`Barrier::wait`](crate::Barrier::wait): a party died, timed out or aborted |
/// | [`Full`](ErrorKind::Full) | [`is_full`](Error::is_full) | [`Queue::try_put`](crate::Queue::try_put), [`Queue::put_timeout`](crate::Queue::put_timeout): no room |
/// | [`Empty`](ErrorKind::Empty) | [`is_empty`](Error::is_empty) | [`Queue::try_get`](crate::Queue::try_get), [`Queue::get_timeout`](crate::Queue::get_timeout): no item |
/// | [`QueueClosed`](ErrorKind::QueueClosed) | [`is_queue_closed`](Error::is_queue_closed) | a [`Queue`](crate::Queue) after [`close`](crate::Queue::close): a put, or a get once it is drained |
/// | [`Usage`](ErrorKind::Usage) | [`is_usage`](Error::is_usage) | a call that is wrong whatever the processes do |
/// | [`Io`](ErrorKind::Io) | — ([`io_error`](Error::io_error) is `Some`) | any other OS error (pipes, waits, signals) |
///
/// # Example
///
/// ```
/// use multiproc::{ErrorKind, Process};
///
/// fn half(x: u32) -> u32 {
///     assert!(x % 2 == 0, "{x} is odd");
///     x / 2
/// }
/// multiproc::entry!(half);
///
/// # fn main() -> Result<(), multiproc::Error> {
/// multiproc::init();
/// let err = Process::spawn(half, 3)?.join().unwrap_err();
/// match err.kind() {
///     ErrorKind::Panic => {
///         assert_eq!(err.panic_report().unwrap().message, "3 is odd");
///     }
///     ErrorKind::NoResult | ErrorKind::Terminated => println!("ended: {:?}", err.exit_status()),
///     _ => return Err(err),
/// }
/// # Ok(()) }
/// ```
pub struct Error {
    kind: Box<Kind>,
}

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
    /// A pool task ran past the pool's task timeout; its worker was killed.
    Timeout,
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

    /// What kind of error this is; the `is_*` predicates are shorthands
    /// for it.
    pub fn kind(&self) -> ErrorKind {
        match *self.kind {
            Kind::Spawn { .. } | Kind::CurrentExe(_) => ErrorKind::Spawn,
            Kind::ExitedEarly { .. } | Kind::Bootstrap { .. } => ErrorKind::ExitedEarly,
            Kind::BootstrapFailed { .. } => ErrorKind::BootstrapFailed,
            Kind::NotInitialized => ErrorKind::NotInitialized,
            Kind::UnknownEntry(_) => ErrorKind::UnknownEntry,
            Kind::NotSpawning => ErrorKind::NotSpawning,
            Kind::Encode { .. } => ErrorKind::Encode,
            Kind::ResultEncode { .. } => ErrorKind::ResultEncode,
            Kind::Decode { .. } | Kind::TaskBadArgs(_) => ErrorKind::Decode,
            Kind::ResultTooLarge { .. } => ErrorKind::ResultTooLarge,
            Kind::Eof => ErrorKind::Eof,
            Kind::MessageTooLarge { .. } => ErrorKind::MessageTooLarge,
            Kind::Poisoned(_) => ErrorKind::Poisoned,
            Kind::BufferTooShort { .. } => ErrorKind::BufferTooShort,
            Kind::Panicked { .. } | Kind::TaskPanicked { .. } => ErrorKind::Panic,
            Kind::NoResult { .. } => ErrorKind::NoResult,
            Kind::Terminated { .. } => ErrorKind::Terminated,
            Kind::WorkerDied { .. } => ErrorKind::WorkerDied,
            Kind::TaskTimeout { .. } => ErrorKind::Timeout,
            Kind::WorkerProtocol { .. } => ErrorKind::ProtocolViolation,
            Kind::PoolBroken { .. } => ErrorKind::PoolBroken,
            Kind::PoolClosed(_) => ErrorKind::PoolClosed,
            Kind::Usage(_) | Kind::WrongDirection(_) | Kind::AlreadyJoined => ErrorKind::Usage,
            Kind::OwnerDied { .. } => ErrorKind::OwnerDied,
            Kind::BrokenBarrier(_) => ErrorKind::BrokenBarrier,
            Kind::QueueFull => ErrorKind::Full,
            Kind::QueueEmpty => ErrorKind::Empty,
            Kind::QueueClosed => ErrorKind::QueueClosed,
            Kind::ItemTooLarge { .. } => ErrorKind::MessageTooLarge,
            Kind::QueueCorrupt(_) => ErrorKind::Decode,
            Kind::Io { .. } => ErrorKind::Io,
        }
    }

    /// The process could not be started at all (missing or unusable
    /// executable, no resources, this program's executable replaced on
    /// disk: see [`ErrorKind::Spawn`]).
    ///
    /// Shorthand for `self.kind() == ErrorKind::Spawn`.
    pub fn is_spawn(&self) -> bool {
        self.kind() == ErrorKind::Spawn
    }

    /// The worker started but exited (or stopped reading) before its
    /// bootstrap data was written; [`Error::exit_status`] tells how it ended.
    ///
    /// Shorthand for `self.kind() == ErrorKind::ExitedEarly`.
    pub fn is_exited_early(&self) -> bool {
        self.kind() == ErrorKind::ExitedEarly
    }

    /// The entry function is not registered with [`entry!`](crate::entry).
    ///
    /// Shorthand for `self.kind() == ErrorKind::UnknownEntry`.
    pub fn is_unknown_entry(&self) -> bool {
        self.kind() == ErrorKind::UnknownEntry
    }

    /// The current executable can't act as a worker: `init()` was never
    /// called and no executable was set.
    ///
    /// Shorthand for `self.kind() == ErrorKind::NotInitialized`.
    pub fn is_not_initialized(&self) -> bool {
        self.kind() == ErrorKind::NotInitialized
    }

    /// [`pass_handle`](crate::pass_handle) (or its former name `duplicate_for_child`) was called
    /// outside a spawn, a pool task or a message.
    ///
    /// Shorthand for `self.kind() == ErrorKind::NotSpawning`.
    pub fn is_not_spawning(&self) -> bool {
        self.kind() == ErrorKind::NotSpawning
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
    ///
    /// Spans two kinds: true when [`Error::kind`] is [`ErrorKind::Encode`]
    /// (here) or [`ErrorKind::ResultEncode`] (in the worker).
    pub fn is_encode(&self) -> bool {
        matches!(self.kind(), ErrorKind::Encode | ErrorKind::ResultEncode)
    }

    /// The entry function (or pool task) ran and returned, but its result
    /// could not be serialized in the worker (its `Serialize` failed); the
    /// message says why. A [`Process`](crate::Process) worker exits with
    /// [`exit_code::BAD_RESULT`](crate::exit_code::BAD_RESULT) then.
    ///
    /// Shorthand for `self.kind() == ErrorKind::ResultEncode`.
    pub fn is_result_encode(&self) -> bool {
        self.kind() == ErrorKind::ResultEncode
    }

    /// The peer closed its end of the connection.
    ///
    /// Shorthand for `self.kind() == ErrorKind::Eof`.
    pub fn is_eof(&self) -> bool {
        self.kind() == ErrorKind::Eof
    }

    /// A frame was over the receiving end's size cap (the connection is
    /// poisoned from then on).
    ///
    /// Shorthand for `self.kind() == ErrorKind::MessageTooLarge`.
    pub fn is_message_too_large(&self) -> bool {
        self.kind() == ErrorKind::MessageTooLarge
    }

    /// The connection can't be used any more: an earlier frame was too
    /// large or cut off.
    ///
    /// Shorthand for `self.kind() == ErrorKind::Poisoned`.
    pub fn is_poisoned(&self) -> bool {
        self.kind() == ErrorKind::Poisoned
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
    ///
    /// Shorthand for `self.kind() == ErrorKind::Panic`.
    pub fn is_panic(&self) -> bool {
        self.kind() == ErrorKind::Panic
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
    ///
    /// Shorthand for `self.kind() == ErrorKind::WorkerDied`.
    pub fn is_worker_died(&self) -> bool {
        self.kind() == ErrorKind::WorkerDied
    }

    /// A pool task ran past the pool's task timeout.
    ///
    /// Shorthand for `self.kind() == ErrorKind::Timeout`.
    pub fn is_timeout(&self) -> bool {
        self.kind() == ErrorKind::Timeout
    }

    /// The pool can't run tasks: its initializer failed, or workers could
    /// not be started or replaced. When a worker could not be replaced,
    /// the spawn's own error is this one's
    /// [`source`](std::error::Error::source), and its OS error is
    /// [`Error::io_error`].
    ///
    /// Shorthand for `self.kind() == ErrorKind::PoolBroken`.
    pub fn is_pool_broken(&self) -> bool {
        self.kind() == ErrorKind::PoolBroken
    }

    /// The pool was closed or terminated.
    ///
    /// Shorthand for `self.kind() == ErrorKind::PoolClosed`.
    pub fn is_pool_closed(&self) -> bool {
        self.kind() == ErrorKind::PoolClosed
    }

    /// The call itself was wrong, whatever the processes did (Python's
    /// `ValueError`): an argument out of range (`Pool::new(0)`,
    /// `max_tasks_per_child(0)`), an option the pool cannot honor
    /// (`Stdio::Capture` for pool workers), a call out of order
    /// (`Pool::join` before `close`) or repeated
    /// ([`Process::join_timeout`](crate::Process::join_timeout) or
    /// [`AsyncResult::get_timeout`](crate::AsyncResult::get_timeout) after
    /// the result was taken), or a send on a
    /// read-only end of a [`Pipe::simplex`](crate::Pipe::simplex) (a
    /// receive on a write-only one).
    ///
    /// Shorthand for `self.kind() == ErrorKind::Usage`.
    pub fn is_usage(&self) -> bool {
        self.kind() == ErrorKind::Usage
    }

    /// A lock's last holder died holding it.
    ///
    /// Shorthand for `self.kind() == ErrorKind::OwnerDied`.
    pub fn is_owner_died(&self) -> bool {
        self.kind() == ErrorKind::OwnerDied
    }

    /// A queue had no room (see [`ErrorKind::Full`]).
    ///
    /// Shorthand for `self.kind() == ErrorKind::Full`.
    pub fn is_full(&self) -> bool {
        self.kind() == ErrorKind::Full
    }

    /// A queue had no item (see [`ErrorKind::Empty`]).
    ///
    /// Shorthand for `self.kind() == ErrorKind::Empty`.
    pub fn is_empty(&self) -> bool {
        self.kind() == ErrorKind::Empty
    }

    /// A queue was closed (see [`ErrorKind::QueueClosed`]).
    ///
    /// Shorthand for `self.kind() == ErrorKind::QueueClosed`.
    pub fn is_queue_closed(&self) -> bool {
        self.kind() == ErrorKind::QueueClosed
    }

    /// A barrier is broken.
    ///
    /// Shorthand for `self.kind() == ErrorKind::BrokenBarrier`.
    pub fn is_broken_barrier(&self) -> bool {
        self.kind() == ErrorKind::BrokenBarrier
    }

    /// A pool worker sent something that is not a pool message (an
    /// undecodable frame, one over the connection's size cap, a frame cut
    /// off): the pool killed it, and the task it was running failed with
    /// this error, which names the worker ([`Error::pid`]) and what it sent.
    ///
    /// Shorthand for `self.kind() == ErrorKind::ProtocolViolation`.
    pub fn is_protocol_violation(&self) -> bool {
        self.kind() == ErrorKind::ProtocolViolation
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
    ///
    /// Shorthand for `self.kind() == ErrorKind::Terminated`.
    pub fn is_terminated(&self) -> bool {
        self.kind() == ErrorKind::Terminated
    }

    /// The worker ended without a result and not by our doing: an exit
    /// with any code after its bootstrap was through (200–210 included), a
    /// signal, or another process's `TerminateProcess` ([`Error::exit_status`]
    /// tells which). Not [`is_terminated`](Error::is_terminated) (our own
    /// `terminate`/`kill`) nor [`is_bootstrap_failure`](Error::is_bootstrap_failure)
    /// (an exit with 200–208 before the bootstrap was through).
    ///
    /// Shorthand for `self.kind() == ErrorKind::NoResult`.
    pub fn is_no_result(&self) -> bool {
        self.kind() == ErrorKind::NoResult
    }

    /// The worker's bootstrap failed (see [`exit_code`](crate::exit_code)).
    ///
    /// Shorthand for `self.kind() == ErrorKind::BootstrapFailed`.
    pub fn is_bootstrap_failure(&self) -> bool {
        self.kind() == ErrorKind::BootstrapFailed
    }

    /// A result could not be decoded, or was over its size cap, or a pool
    /// task's input could not be decoded in the worker. (An input that
    /// cannot be serialized in this process is [`Error::is_encode`], through
    /// every pool call alike.)
    ///
    /// Spans two kinds: true when [`Error::kind`] is [`ErrorKind::Decode`]
    /// or [`ErrorKind::ResultTooLarge`].
    pub fn is_decode(&self) -> bool {
        matches!(self.kind(), ErrorKind::Decode | ErrorKind::ResultTooLarge)
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

    /// The underlying OS error, if there is one: for
    /// [`ErrorKind::Spawn`], [`ErrorKind::Io`], an
    /// [`ErrorKind::ExitedEarly`] found writing the bootstrap data, and an
    /// [`ErrorKind::Encode`] for a handle (a [`Connection`](crate::Connection))
    /// that could not be passed to the child (`EMFILE`, say), and an
    /// [`ErrorKind::PoolBroken`] because a worker could not be replaced
    /// (the spawn's OS error: `NotFound` for a missing executable).
    pub fn io_error(&self) -> Option<&io::Error> {
        match &*self.kind {
            Kind::Spawn { source, .. }
            | Kind::Bootstrap { source, .. }
            | Kind::CurrentExe(source)
            | Kind::Io { source, .. } => Some(source),
            Kind::Encode {
                source: EncodeError::Handle(cause),
                ..
            }
            | Kind::PoolBroken {
                cause: Some(cause), ..
            } => cause.io_error(),
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
        match &*self.kind {
            Kind::PoolBroken {
                cause: Some(cause), ..
            } => Some(&**cause),
            kind => std::error::Error::source(kind),
        }
    }
}

/// The [`io::ErrorKind`] is the OS error's, where there is one
/// ([`Error::io_error`]); otherwise [`BrokenPipe`](io::ErrorKind::BrokenPipe)
/// for [`ErrorKind::ExitedEarly`], [`UnexpectedEof`](io::ErrorKind::UnexpectedEof)
/// for [`ErrorKind::Eof`], [`InvalidData`](io::ErrorKind::InvalidData) for what
/// can't be serialized or decoded (the `Encode`, `ResultEncode`, `Decode`,
/// `ResultTooLarge`, `MessageTooLarge`, `Poisoned` and `ProtocolViolation`
/// kinds), [`InvalidInput`](io::ErrorKind::InvalidInput) for a wrong call
/// (`Usage`, `UnknownEntry`, `NotSpawning`, `BufferTooShort`),
/// [`TimedOut`](io::ErrorKind::TimedOut) for [`ErrorKind::Timeout`],
/// [`WouldBlock`](io::ErrorKind::WouldBlock) for [`ErrorKind::Full`] and
/// [`ErrorKind::Empty`], and [`Other`](io::ErrorKind::Other) for the rest. The `Error` itself stays
/// inside: [`io::Error::get_ref`] and [`io::Error::into_inner`] give it
/// back.
impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        let kind = match e.io_error() {
            Some(src) => src.kind(),
            None => match e.kind() {
                ErrorKind::ExitedEarly => io::ErrorKind::BrokenPipe,
                ErrorKind::Eof => io::ErrorKind::UnexpectedEof,
                ErrorKind::Encode
                | ErrorKind::ResultEncode
                | ErrorKind::Decode
                | ErrorKind::ResultTooLarge
                | ErrorKind::MessageTooLarge
                | ErrorKind::Poisoned
                | ErrorKind::ProtocolViolation => io::ErrorKind::InvalidData,
                ErrorKind::Usage
                | ErrorKind::UnknownEntry
                | ErrorKind::NotSpawning
                | ErrorKind::BufferTooShort => io::ErrorKind::InvalidInput,
                ErrorKind::Timeout => io::ErrorKind::TimedOut,
                ErrorKind::Full | ErrorKind::Empty => io::ErrorKind::WouldBlock,
                _ => io::ErrorKind::Other,
            },
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
