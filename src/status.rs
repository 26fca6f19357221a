//! How a worker ended: [`ExitStatus`] (as the OS reported it) and
//! [`PanicReport`] (a panic, as data). A bottom module: it uses only `sys`'s
//! raw status and the exit codes, so [`Error`](crate::Error) can carry both
//! without importing the layers above it.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::exit_code;
use crate::sys;

/// How a worker process ended, as the OS reported it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ExitStatus(pub(crate) sys::RawStatus);

impl ExitStatus {
    /// The exit code, if the process exited (on Windows always; a
    /// `TerminateProcess` code such as `0x10000` included).
    pub fn code(&self) -> Option<i32> {
        match self.0 {
            sys::RawStatus::Exited(c) => Some(c),
            sys::RawStatus::Signaled(_) => None,
        }
    }

    /// The signal that killed the process (Unix only).
    pub fn signal(&self) -> Option<i32> {
        match self.0 {
            sys::RawStatus::Signaled(s) => Some(s),
            sys::RawStatus::Exited(_) => None,
        }
    }

    /// Exited with code 0.
    pub fn success(&self) -> bool {
        self.0 == sys::RawStatus::Exited(0)
    }

    /// Ended the way [`Popen::terminate`](crate::Popen::terminate) ends a process: SIGTERM on Unix,
    /// exit code [`exit_code::TERMINATE`] (`0x10000`) on Windows.
    pub fn is_terminated(&self) -> bool {
        self.0 == sys::TERMINATED
    }

    /// Python's `exitcode` convention: the exit code, or minus the signal
    /// number when a signal killed the process.
    /// A Windows process ended with `TERMINATE` reads as `-15` (`-SIGTERM`),
    /// as CPython shows it.
    pub fn python_exitcode(&self) -> i32 {
        if self.is_terminated() {
            return -15;
        }
        match self.0 {
            sys::RawStatus::Exited(c) => c,
            sys::RawStatus::Signaled(s) => -s,
        }
    }
}

impl fmt::Debug for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            sys::RawStatus::Exited(c) => {
                write!(f, "exit code {c}")?;
                // Only codes no entry is likely to choose itself get a
                // gloss: an entry may well exit with 205, say, and a status
                // alone can't tell (see `exit_code`).
                if c == exit_code::TERMINATE && cfg!(windows) {
                    write!(f, " (terminated)")?;
                }
                Ok(())
            }
            sys::RawStatus::Signaled(s) => write!(f, "signal {s}"),
        }
    }
}

/// A panic in a worker, as data.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct PanicReport {
    /// The panic message.
    pub message: String,
    /// `file:line:column` where it panicked, if known.
    pub location: Option<String>,
}
