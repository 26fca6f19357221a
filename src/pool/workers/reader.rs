//! What a worker's reader thread runs: [`read_worker`] (each message to
//! the scheduler, until the stream ends), the watch over a launched
//! worker or an SPMD rank ([`LaunchWatch`]: its launcher command, its
//! heartbeats), and [`worker_end`] (making sure the worker is gone, and
//! how it ended).

use std::time::{Duration, Instant};

use super::Proc;
use crate::codec::handles::Carried;
use crate::connection::Connection;
use crate::error::Result;
use crate::pool::protocol::{FromWorker, Heartbeat};
use crate::status::ExitStatus;
use crate::sys;

/// How long a worker whose channel ended may take to exit before it is
/// killed. Its exit follows at once (the OS closes a process's handles as
/// it exits, a moment before the exit is visible); only a worker that
/// closed its channel and kept running waits this long.
const EXIT_GRACE: Duration = Duration::from_secs(5);
/// After we killed a worker, how long to wait for the OS to confirm it.
/// A kill takes effect at once; this bounds only a process the OS can't
/// end (stuck in the kernel), which the reaper then collects later.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// How a worker's stream of messages ended.
pub(super) enum End {
    /// At end of file, whole or cut off in the middle of a message (a
    /// worker killed while it wrote).
    Closed,
    /// The worker sent something that is not a pool message.
    Violation(String),
    /// A launched worker the pool gives up on while its connection is
    /// still open: why.
    Lost(String),
}

/// The reader thread's loop: hands each message from a worker, with the
/// handles that came with it (or why they could not be taken), to
/// `on_message` until the stream ends; how it ended. A launched worker's
/// is also watched between messages (`launched`, see [`LaunchWatch`]).
pub(super) fn read_worker(
    conn: &Connection,
    mut watch: Option<LaunchWatch<'_>>,
    mut on_message: impl FnMut(FromWorker, Result<Carried>),
) -> End {
    loop {
        if let Some(lost) = watch.as_mut().and_then(|w| w.until_readable(conn)) {
            return End::Lost(lost);
        }
        let (frame, carried) = match conn.recv_frame() {
            Ok(frame) => frame,
            Err(e) if e.is_eof() || e.is_poisoned() => return End::Closed,
            Err(e) if e.is_message_too_large() => {
                return End::Violation(format!("it announced a frame that was refused: {e}"))
            }
            Err(e) => return End::Violation(format!("its messages can't be read: {e}")),
        };
        if let Some(w) = watch.as_mut() {
            w.heard = Instant::now();
        }
        match postcard::from_bytes::<FromWorker>(&frame) {
            // Heard (above): nothing for the scheduler.
            Ok(FromWorker::Heartbeat) => {}
            Ok(msg) => on_message(msg, carried),
            Err(e) => {
                return End::Violation(format!(
                    "it sent a message of {} bytes that is not a pool message: {e}",
                    frame.len()
                ))
            }
        }
    }
}

/// How often the reader of a launched worker with nothing to read looks
/// at its launcher command (a look costs a `waitpid`; while messages
/// come, it looks at most this often too).
const LAUNCH_LOOK: Duration = Duration::from_millis(250);

/// The reader's watch over a launched worker, whose process the pool
/// knows only through its launcher command and its connection, or over
/// an SPMD rank, known only by its connection. The worker is given up
/// when nothing came from it for the heartbeat timeout (see
/// `Launcher::heartbeat`), or [`EXIT_GRACE`] after its command was seen
/// to have exited while the connection stays open (`sh -c '"$0" &'`, an
/// ssh whose remote side lives on) — the worker's own end (its
/// connection's end of file) normally comes with the command's or just
/// before it.
pub(super) struct LaunchWatch<'a> {
    /// The launcher command; `None` for an SPMD rank.
    child: Option<&'a sys::CommandChild>,
    heartbeat: Option<Heartbeat>,
    /// When the last message came.
    heard: Instant,
    /// When the command was seen to have exited, and how.
    exited: Option<(Instant, ExitStatus)>,
    next_look: Instant,
}

impl<'a> LaunchWatch<'a> {
    /// The watch over a worker with `child` or `heartbeat` (`None` when
    /// it has neither: nothing to watch).
    pub(super) fn new(
        child: Option<&'a sys::CommandChild>,
        heartbeat: Option<Heartbeat>,
    ) -> Option<Self> {
        if child.is_none() && heartbeat.is_none() {
            return None;
        }
        let now = Instant::now();
        Some(LaunchWatch {
            child,
            heartbeat,
            heard: now,
            exited: None,
            next_look: now,
        })
    }

    /// Waits until `conn` has something to read (or an error to report);
    /// why the worker counts as dead, if it does first.
    fn until_readable(&mut self, conn: &Connection) -> Option<String> {
        loop {
            let now = Instant::now();
            if let (None, Some(child), true) = (self.exited, self.child, now >= self.next_look) {
                self.next_look = now + LAUNCH_LOOK;
                if let Ok(Some(status)) = child.try_wait() {
                    self.exited = Some((now, ExitStatus(status)));
                }
            }
            let mut wait = match self.exited {
                Some((at, status)) => {
                    let left = EXIT_GRACE.saturating_sub(now.duration_since(at));
                    if left.is_zero() {
                        return Some(format!(
                            "its launcher command ended ({status}) but the worker's connection \
                             was still open {EXIT_GRACE:?} later"
                        ));
                    }
                    left
                }
                None if self.child.is_some() => self.next_look.saturating_duration_since(now),
                // No command to look at: the heartbeat bounds the wait.
                None => Duration::MAX,
            };
            if let Some(hb) = self.heartbeat {
                let left = hb.timeout.saturating_sub(now.duration_since(self.heard));
                if left.is_zero() {
                    return Some(format!("no heartbeat for {:?}", hb.timeout));
                }
                wait = wait.min(left);
            }
            if conn.poll(Some(wait)).unwrap_or(true) {
                return None;
            }
        }
    }
}

/// After [`read_worker`]: makes sure the worker is gone and tells how it
/// ended (its status, what it did that broke the protocol, why a launched
/// worker was given up). A worker that broke the protocol or was given up
/// is killed at once; one whose stream ended is given [`EXIT_GRACE`] to
/// exit, and killed (a protocol violation too) if it is still running
/// then.
pub(super) fn worker_end(
    popen: &Proc,
    end: End,
) -> (Option<ExitStatus>, Option<String>, Option<String>) {
    if let Proc::Rank { .. } | Proc::Member { .. } = popen {
        // No process of its own to wait for (a rank; a worker whose
        // command is shared): the end of its connection is its end. One
        // that broke the protocol or fell silent has its connection shut
        // down, so that it sees that, should it wake, and exits.
        let (violation, lost) = match end {
            End::Closed => return (None, None, None),
            End::Violation(why) => (Some(why), None),
            End::Lost(why) => (None, Some(why)),
        };
        let _ = popen.kill();
        return (None, violation, lost);
    }
    let (violation, lost) = match end {
        End::Violation(why) => (Some(why), None),
        End::Lost(why) => (None, Some(why)),
        End::Closed => match popen.wait(Some(EXIT_GRACE)) {
            Ok(Some(status)) => return (Some(status), None, None),
            _ => (
                Some(format!(
                    "it closed its channel but was still running {EXIT_GRACE:?} later"
                )),
                None,
            ),
        },
    };
    let _ = popen.kill();
    (popen.wait(Some(KILL_WAIT)).ok().flatten(), violation, lost)
}
