//! [`Pipe`]: connected pairs of [`Connection`]s.

use super::Connection;
use crate::error::{Error, Result};
use crate::sys;

/// Makes connected pairs of [`Connection`]s (Python's `multiprocessing.Pipe`).
#[derive(Debug)]
pub struct Pipe(());

impl Pipe {
    /// Two connected ends; each can send and receive.
    ///
    /// ```
    /// # fn main() -> Result<(), multiproc::Error> {
    /// let (a, b) = multiproc::Pipe::duplex()?;
    /// a.send(&"ping")?;
    /// assert_eq!(b.recv::<String>()?, "ping");
    /// b.send(&42u32)?;
    /// assert_eq!(a.recv::<u32>()?, 42);
    /// # Ok(()) }
    /// ```
    pub fn duplex() -> Result<(Connection, Connection)> {
        let (a, b) = sys::pipe(true).map_err(|e| Error::io("cannot create a pipe", e))?;
        Ok((
            Connection::new(a, true, true, false),
            Connection::new(b, true, true, false),
        ))
    }

    /// A duplex pair whose ends read ahead: each `recv` may take more than
    /// one frame off the OS pipe into the end's buffer (fewer system calls
    /// per message). Only for ends that are never shared with another
    /// process, such as the pool's own channels: what one process buffered
    /// is lost to every other.
    pub(crate) fn duplex_read_ahead() -> Result<(Connection, Connection)> {
        let (a, b) = sys::pipe(true).map_err(|e| Error::io("cannot create a pipe", e))?;
        Ok((
            Connection::new(a, true, true, true),
            Connection::new(b, true, true, true),
        ))
    }

    /// `(reader, writer)`: the first end only receives, the second only
    /// sends (Python's `Pipe(duplex=False)`).
    pub fn simplex() -> Result<(Connection, Connection)> {
        let (r, w) = sys::pipe(false).map_err(|e| Error::io("cannot create a pipe", e))?;
        Ok((
            Connection::new(r, true, false, false),
            Connection::new(w, false, true, false),
        ))
    }
}
