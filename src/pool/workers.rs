//! The parent's side of each worker: starting it, and the reader and
//! writer threads that carry its frames and notice its end.

use std::collections::VecDeque;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::protocol::{pool_worker_main, FromWorker, WorkerConfig};
use super::scheduler::{Shared, State, WorkerSlot};
use crate::connection::{Connection, Pipe};
use crate::error::{Error, Result};
use crate::popen::Popen;
use crate::status::ExitStatus;

/// How long a worker whose channel ended may take to exit before it is
/// killed. Its exit follows at once (the OS closes a process's handles as
/// it exits, a moment before the exit is visible); only a worker that
/// closed its channel and kept running waits this long.
const EXIT_GRACE: Duration = Duration::from_secs(5);
/// After we killed a worker, how long to wait for the OS to confirm it.
/// A kill takes effect at once; this bounds only a process the OS can't
/// end (stuck in the kernel), which the reaper then collects later.
const KILL_WAIT: Duration = Duration::from_secs(5);
/// The signal `Popen::kill` sends on Unix (SIGKILL; there is no signal on
/// Windows, where a kill ends the process with `TERMINATE`).
pub(super) const KILL_SIGNAL: i32 = 9;

/// The reader thread's loop: hands each message from a worker to
/// `on_message` until the stream ends. `None` when it ended (the worker
/// exited, or closed its channel); `Some(why)` when the worker sent
/// something that is not a pool message.
fn read_worker(conn: &Connection, mut on_message: impl FnMut(FromWorker)) -> Option<String> {
    loop {
        let frame = match conn.recv_bytes() {
            Ok(frame) => frame,
            // The end of the stream, whole or cut off in the middle of a
            // message (a worker killed while it wrote).
            Err(e) if e.is_eof() || e.is_poisoned() => return None,
            Err(e) if e.is_message_too_large() => {
                return Some(format!("it announced a frame that was refused: {e}"))
            }
            Err(e) => return Some(format!("its messages can't be read: {e}")),
        };
        match postcard::from_bytes::<FromWorker>(&frame) {
            Ok(msg) => on_message(msg),
            Err(e) => {
                return Some(format!(
                    "it sent a message of {} bytes that is not a pool message: {e}",
                    frame.len()
                ))
            }
        }
    }
}

/// After [`read_worker`]: makes sure the worker is gone and tells how it
/// ended. A worker that broke the protocol is killed at once; one whose
/// stream ended is given [`EXIT_GRACE`] to exit, and killed (a protocol
/// violation too) if it is still running then.
fn worker_end(popen: &Popen, violation: Option<String>) -> (Option<ExitStatus>, Option<String>) {
    let why = match violation {
        Some(why) => why,
        None => match popen.wait(Some(EXIT_GRACE)) {
            Ok(Some(status)) => return (Some(status), None),
            _ => format!("it closed its channel but was still running {EXIT_GRACE:?} later"),
        },
    };
    let _ = popen.kill();
    (popen.wait(Some(KILL_WAIT)).ok().flatten(), Some(why))
}

impl Shared {
    pub(super) fn spawn_worker(self: &Arc<Self>, st: &mut State) -> Result<()> {
        let (mine, theirs) = Pipe::duplex_read_ahead()?;
        let cfg = WorkerConfig {
            initializer: self.cfg.initializer.clone(),
        };
        let popen = Arc::new(self.cfg.popen.spawn(pool_worker_main, &(theirs, cfg))?);
        let conn = Arc::new(mine);
        // The worker's exit ends the reader's stream even while children it
        // started hold its end of the channel.
        conn.watch_peer(&popen);
        let id = st.next_id();
        let (tx, rx) = mpsc::channel::<Vec<u8>>();
        let writer_conn = Arc::clone(&conn);
        let writer = std::thread::Builder::new()
            .name(format!("multiproc-pool-w{}", popen.pid()))
            .spawn(move || {
                for frame in rx {
                    if writer_conn.send_bytes(&frame).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| Error::io("cannot start a pool thread", e))?;
        let shared = Arc::clone(self);
        let reader_popen = Arc::clone(&popen);
        let reader = std::thread::Builder::new()
            .name(format!("multiproc-pool-r{}", popen.pid()))
            .spawn(move || {
                let violation = read_worker(&conn, |msg| shared.on_message(id, msg));
                let (status, violation) = worker_end(&reader_popen, violation);
                shared.on_exit(id, status, violation);
            })
            .map_err(|e| Error::io("cannot start a pool thread", e))?;
        // Join the threads of workers already gone (finished, so this
        // doesn't wait), so a pool that keeps replacing workers doesn't
        // keep their threads (or, on Windows, their handles). A reader
        // calling this from `on_exit` is still running and stays.
        let (done, live): (Vec<_>, Vec<_>) = std::mem::take(&mut st.threads)
            .into_iter()
            .partition(|t| t.is_finished());
        st.threads = live;
        for t in done {
            let _ = t.join();
        }
        st.threads.push(writer);
        st.threads.push(reader);
        st.starting += 1;
        st.workers.push(WorkerSlot {
            id,
            popen,
            tx: Some(tx),
            inflight: VecDeque::new(),
            started_frame: 0,
            head_since: Instant::now(),
            sent_tasks: 0,
            ready: false,
            retiring: false,
            timed_out: false,
        });
        Ok(())
    }
}
