//! The crate's error type.

use std::fmt;
use std::io;

use crate::status::{ExitStatus, PanicReport};

mod kind;

pub use kind::ErrorKind;
pub(crate) use kind::{EncodeError, Kind};

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
/// | [`Timeout`](ErrorKind::Timeout) | [`is_timeout`](Error::is_timeout) | a pool result: the task ran past its time limit (the pool's or its own) |
/// | [`Cancelled`](ErrorKind::Cancelled) | [`is_cancelled`](Error::is_cancelled) | a pool result: [`AsyncResult::cancel`](crate::AsyncResult::cancel) stopped the task |
/// | [`ProtocolViolation`](ErrorKind::ProtocolViolation) | [`is_protocol_violation`](Error::is_protocol_violation) | a pool result: the worker sent garbage |
/// | [`PoolBroken`](ErrorKind::PoolBroken) | [`is_pool_broken`](Error::is_pool_broken) | the pool: initializer failed, workers can't be replaced |
/// | [`PoolClosed`](ErrorKind::PoolClosed) | [`is_pool_closed`](Error::is_pool_closed) | the pool: work after `close` or `terminate` |
/// | [`OwnerDied`](ErrorKind::OwnerDied) | [`is_owner_died`](Error::is_owner_died) | acquiring a [`Lock`](crate::Lock), [`RLock`](crate::RLock), [`Condition`](crate::Condition) or [`Value`](crate::Value): its last holder died holding it ([`LockError`](crate::LockError) carries the guard) |
/// | [`BrokenBarrier`](ErrorKind::BrokenBarrier) | [`is_broken_barrier`](Error::is_broken_barrier) | [`Barrier::wait`](crate::Barrier::wait): a party died, timed out or aborted |
/// | [`Full`](ErrorKind::Full) | [`is_full`](Error::is_full) | [`Queue::try_put`](crate::Queue::try_put), [`Queue::put_timeout`](crate::Queue::put_timeout): no room |
/// | [`Empty`](ErrorKind::Empty) | [`is_empty`](Error::is_empty) | [`Queue::try_get`](crate::Queue::try_get), [`Queue::get_timeout`](crate::Queue::get_timeout): no item |
/// | [`QueueClosed`](ErrorKind::QueueClosed) | [`is_queue_closed`](Error::is_queue_closed) | a [`Queue`](crate::Queue) after [`close`](crate::Queue::close): a put, or a get once it is drained |
/// | [`Usage`](ErrorKind::Usage) | [`is_usage`](Error::is_usage) | a call that is wrong whatever the processes do |
/// | [`Authentication`](ErrorKind::Authentication) | [`is_authentication`](Error::is_authentication) | [`Listener::accept`](crate::Listener::accept), [`Client::connect`](crate::Client::connect): wrong key, not a multiproc peer, or no answer in time |
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
            Kind::Cancelled => ErrorKind::Cancelled,
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
            Kind::Auth(_) => ErrorKind::Authentication,
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

    /// A pool task ran past its time limit (the pool's or its own); its
    /// worker was killed ([`Error::pid`] says which).
    ///
    /// Shorthand for `self.kind() == ErrorKind::Timeout`.
    pub fn is_timeout(&self) -> bool {
        self.kind() == ErrorKind::Timeout
    }

    /// A pool task was cancelled with
    /// [`AsyncResult::cancel`](crate::AsyncResult::cancel) before it
    /// finished.
    ///
    /// Shorthand for `self.kind() == ErrorKind::Cancelled`.
    pub fn is_cancelled(&self) -> bool {
        self.kind() == ErrorKind::Cancelled
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

    /// A [`Listener`](crate::Listener)'s or [`Client`](crate::Client)'s
    /// authentication handshake failed (see
    /// [`ErrorKind::Authentication`]).
    ///
    /// Shorthand for `self.kind() == ErrorKind::Authentication`.
    pub fn is_authentication(&self) -> bool {
        self.kind() == ErrorKind::Authentication
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
/// [`PermissionDenied`](io::ErrorKind::PermissionDenied) for
/// [`ErrorKind::Authentication`],
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
                ErrorKind::Authentication => io::ErrorKind::PermissionDenied,
                ErrorKind::Full | ErrorKind::Empty => io::ErrorKind::WouldBlock,
                _ => io::ErrorKind::Other,
            },
        };
        io::Error::new(kind, e)
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
