//! The crate's error type.

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::popen::ExitStatus;

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
    Encode {
        entry: String,
        source: postcard::Error,
    },
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

    /// The arguments could not be serialized.
    pub fn is_encode(&self) -> bool {
        matches!(*self.kind, Kind::Encode { .. })
    }

    /// How the worker ended, when the error is that it ended too early.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        match *self.kind {
            Kind::ExitedEarly { status, .. } => Some(status),
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
            None if e.is_encode() => io::ErrorKind::InvalidData,
            None => io::ErrorKind::Other,
        };
        io::Error::new(kind, e)
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
