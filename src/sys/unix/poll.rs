//! Waiting for fds with `poll`.

use std::io;
use std::os::fd::BorrowedFd;
use std::time::Duration;

use rustix::io::Errno;

use super::BorrowedRaw;
use crate::deadline;

/// The longest single poll: `i32::MAX` milliseconds (24.8 days), what
/// poll(2)'s `int` timeout holds where rustix has no ppoll (macOS); longer
/// waits poll again until their deadline.
pub(super) const MAX_POLL: Duration = Duration::from_millis(i32::MAX as u64);

/// A poll timeout, clamped to [`MAX_POLL`].
pub(super) fn to_timespec(d: Duration) -> rustix::event::Timespec {
    let d = d.min(MAX_POLL);
    rustix::event::Timespec {
        tv_sec: d.as_secs() as _,
        tv_nsec: d.subsec_nanos() as _,
    }
}

/// Waits until `fd` is readable or `timeout` passes (at most [`MAX_POLL`]
/// at a time: the caller loops until its deadline); true if readable.
pub(crate) fn wait_readable(fd: BorrowedFd<'_>, timeout: Option<Duration>) -> io::Result<bool> {
    let ts = timeout.map(to_timespec);
    let mut polls = [rustix::event::PollFd::new(
        &fd,
        rustix::event::PollFlags::IN,
    )];
    match rustix::event::poll(&mut polls, ts.as_ref()) {
        Ok(n) => Ok(n > 0),
        Err(Errno::INTR) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Waits until at least one of `objs` is readable (a pidfd of an exited
/// process, a socket with data or EOF); returns the indices that are.
pub(crate) fn wait_any(
    objs: &[BorrowedRaw<'_>],
    timeout: Option<Duration>,
) -> io::Result<Vec<usize>> {
    use rustix::event::{PollFd, PollFlags};
    let deadline = deadline::deadline_of(timeout);
    loop {
        let left = deadline::left(deadline).map(to_timespec);
        let mut polls: Vec<PollFd<'_>> =
            objs.iter().map(|o| PollFd::new(o, PollFlags::IN)).collect();
        match rustix::event::poll(&mut polls, left.as_ref()) {
            // A clamped poll that ended before the deadline: again.
            Ok(0) if !deadline::passed(deadline) => continue,
            Ok(_) => {
                return Ok(polls
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| !p.revents().is_empty())
                    .map(|(i, _)| i)
                    .collect())
            }
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poll_timeouts_are_clamped_to_what_poll_takes() {
        let ts = to_timespec(Duration::MAX);
        assert_eq!(ts.tv_sec as u64, MAX_POLL.as_secs());
        assert_eq!(ts.tv_nsec as u32, MAX_POLL.subsec_nanos());
        let ts = to_timespec(Duration::from_millis(1_500));
        assert_eq!((ts.tv_sec, ts.tv_nsec), (1, 500_000_000));
    }
}
