//! [`wait`] on processes and connections, and [`Waitable`].

use std::time::Duration;

use super::Connection;
use crate::deadline;
use crate::error::{Error, Result};
use crate::popen::Sentinel;
use crate::sys;

/// Something [`wait`] can watch: a process [`Sentinel`] or a [`Connection`].
#[derive(Clone, Copy, Debug)]
pub enum Waitable<'a> {
    /// Ready once the process has exited.
    Process(Sentinel<'a>),
    /// Ready once a message (or end of file) can be received.
    Connection(&'a Connection),
}

impl<'a> From<Sentinel<'a>> for Waitable<'a> {
    fn from(s: Sentinel<'a>) -> Self {
        Waitable::Process(s)
    }
}

impl<'a> From<&'a Connection> for Waitable<'a> {
    fn from(c: &'a Connection) -> Self {
        Waitable::Connection(c)
    }
}

/// Waits until at least one of `objects` is ready, at most `timeout`
/// (forever with `None`, or with a timeout too long to be a deadline, such
/// as `Duration::MAX`); returns the indices of all the ready ones, in
/// order, empty on timeout (Python's `multiprocessing.connection.wait`).
///
/// There is no limit on the number of objects (on Windows, beyond the 64
/// of `WaitForMultipleObjects`, helper threads wait on the rest).
///
/// ```
/// # fn main() -> Result<(), multiproc::Error> {
/// let (a, b) = multiproc::Pipe::duplex()?;
/// let (c, _d) = multiproc::Pipe::duplex()?;
/// b.send(&1u8)?;
/// let ready = multiproc::wait(&[(&a).into(), (&c).into()], None)?;
/// assert_eq!(ready, vec![0]);
/// # Ok(()) }
/// ```
pub fn wait(objects: &[Waitable<'_>], timeout: Option<Duration>) -> Result<Vec<usize>> {
    let deadline = deadline::deadline_of(timeout);
    loop {
        // What is ready without asking the OS: buffered messages, exits
        // already recorded, processes we can only poll.
        let mut ready = Vec::new();
        let mut handles = Vec::new();
        let mut index = Vec::new();
        let mut must_poll = false;
        for (i, o) in objects.iter().enumerate() {
            match o {
                Waitable::Connection(c) if c.has_buffered() => ready.push(i),
                Waitable::Connection(c) => match c.channel().as_raw() {
                    Some(h) => {
                        handles.push(h);
                        index.push(i);
                    }
                    // A Windows socket: nothing to wait on; poll it.
                    None if c.poll(Some(Duration::ZERO))? => ready.push(i),
                    None => must_poll = true,
                },
                Waitable::Process(s) => match s.handle() {
                    _ if s.exited() => ready.push(i),
                    Some(h) => {
                        handles.push(h);
                        index.push(i);
                    }
                    None => must_poll = true,
                },
            }
        }
        if !ready.is_empty() {
            // Some are known ready: ask the OS about the rest without
            // waiting, so that every ready object is reported.
            if !handles.is_empty() {
                let got = sys::wait_any(&handles, Some(Duration::ZERO))
                    .map_err(|e| Error::io("cannot wait", e))?;
                ready.extend(got.into_iter().map(|k| index[k]));
                ready.sort_unstable();
            }
            return Ok(ready);
        }
        let left = deadline::left(deadline);
        // Without a waitable handle for some process (or a Windows socket
        // connection), poll every 10 ms.
        let slice = if must_poll {
            Some(left.map_or(Duration::from_millis(10), |l| {
                l.min(Duration::from_millis(10))
            }))
        } else {
            left
        };
        let got = sys::wait_any(&handles, slice).map_err(|e| Error::io("cannot wait", e))?;
        if !got.is_empty() {
            let mut out: Vec<usize> = got.into_iter().map(|k| index[k]).collect();
            out.sort_unstable();
            return Ok(out);
        }
        if deadline::passed(deadline) {
            return Ok(Vec::new());
        }
    }
}
