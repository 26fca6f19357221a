//! Starting a worker ([`Shared::spawn_worker`]): its process — a local
//! worker's `Popen`, a launcher command, one of the workers a command
//! started for all, an SPMD rank — then its writer thread (frames, with
//! their handles; a launched worker's heartbeats) and its reader thread
//! (a pending launch's wait for its worker to connect back,
//! [`Shared::connect_launched`], then its messages and its end).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, OnceLock};

use super::reader::{read_worker, worker_end, LaunchWatch};
use super::{lock, Handle, Handles, OutFrame, Proc, Shared};
use crate::codec::handles::Carried;
use crate::connection::{ChildEnd, Connection, Pipe};
use crate::error::{Error, Result};
use crate::pool::launcher::Remote;
use crate::pool::protocol::{pool_worker_main, ToWorker, WorkerConfig};
use crate::pool::scheduler::WorkerId;

impl Shared {
    /// The reader of worker `id`, a pending launch (`popen`, its command
    /// started with `token`): waits, outside the pool's lock, for the
    /// worker to connect back, sends it `cfg`, and notes where it runs;
    /// its connection.
    fn connect_launched(
        &self,
        remote: &Remote,
        token: u64,
        id: WorkerId,
        popen: &Proc,
        cfg: &WorkerConfig,
    ) -> Result<Arc<Connection>> {
        let Proc::Launched {
            command,
            conn: slot,
            killed,
        } = popen
        else {
            unreachable!("only a launched worker's start is pending");
        };
        let (conn, hello) = remote.connect_back(token, command)?;
        if let Err(e) = conn.send(cfg) {
            let _ = command.kill();
            return Err(e);
        }
        let conn = Arc::new(conn);
        let _ = slot.set(Arc::clone(&conn));
        if killed.load(Ordering::SeqCst) {
            // Killed while it connected: `Proc::kill` did not see it.
            let _ = conn.shutdown();
        }
        let host: Arc<str> = Arc::from(hello.host);
        let mut st = lock(&self.state);
        if let Some(h) = st.handles.get(id) {
            h.host = Some(Arc::clone(&host));
            h.own_pid = Some(hello.pid);
        }
        st.sched.note_launched(id, host, hello.pid);
        Ok(conn)
    }

    /// Starts worker `id`: its process, and its writer and reader threads.
    pub(super) fn spawn_worker(
        self: &Arc<Self>,
        handles: &mut Handles,
        id: WorkerId,
    ) -> Result<u32> {
        let cfg = WorkerConfig {
            initializer: self.spawner.initializer.clone(),
            max_memory: self.limits.max_memory_per_child,
            heartbeat: match (&self.spawner.remote, &self.spawner.ranks) {
                (Some(remote), _) => Some(remote.heartbeat()),
                (None, Some(ranks)) => Some(ranks.heartbeat()),
                (None, None) => None,
            },
        };
        let heartbeat = cfg.heartbeat;
        let mut launched_host = None;
        let mut own_pid = None;
        // A launch whose worker is yet to connect back: the launcher and
        // the worker's token (its reader waits for it).
        let mut pending = None;
        let (popen, conn): (_, Option<Arc<Connection>>) =
            match (&self.spawner.remote, &self.spawner.ranks) {
                (_, Some(ranks)) => {
                    let rank = ranks.take()?;
                    rank.conn.send(&cfg)?;
                    launched_host = Some(Arc::from(rank.host));
                    let conn = Arc::new(rank.conn);
                    (
                        Proc::Rank {
                            pid: rank.pid,
                            conn: Arc::clone(&conn),
                        },
                        Some(conn),
                    )
                }
                (None, None) => {
                    let (mine, theirs) = Pipe::duplex_read_ahead()?;
                    // The worker's end marked as its channel to us (handles
                    // both ways on Windows too; a launched worker's is not).
                    let args = (ChildEnd(&theirs), &cfg);
                    let popen = self.spawner.popen.spawn_encoded(pool_worker_main, &args)?;
                    drop(theirs);
                    // The worker's exit ends the reader's stream even while
                    // children it started hold its end of the channel.
                    mine.watch_peer(&popen);
                    (Proc::Local(popen), Some(Arc::new(mine)))
                }
                (Some(remote), None) => match remote.take_pending() {
                    // One of the workers `launch_all` started: connected.
                    Some(launch) => {
                        own_pid = Some(launch.pid);
                        let (conn, host) = (launch.conn, launch.host);
                        conn.send(&cfg)?;
                        launched_host = Some(Arc::from(host));
                        let conn = Arc::new(conn);
                        let proc = Proc::Member {
                            command: launch.command,
                            pid: launch.pid,
                            conn: Arc::clone(&conn),
                        };
                        (proc, Some(conn))
                    }
                    // Only the command is started here, under the pool's
                    // lock; its reader waits for the worker.
                    None => {
                        let (command, token) = remote.start_one()?;
                        pending = Some((Arc::clone(remote), token));
                        let proc = Proc::Launched {
                            command,
                            conn: OnceLock::new(),
                            killed: AtomicBool::new(false),
                        };
                        (proc, None)
                    }
                },
            };
        let popen = Arc::new(popen);
        let (tx, rx) = mpsc::channel::<OutFrame>();
        // The writer's connection: now, or once a pending launch's worker
        // connected back (none if it never does).
        let (conn_tx, conn_rx) = mpsc::sync_channel::<Arc<Connection>>(1);
        if let Some(conn) = &conn {
            let _ = conn_tx.send(Arc::clone(conn));
        }
        let writer_popen = Arc::clone(&popen);
        let writer_shared = Arc::clone(self);
        let writer = std::thread::Builder::new()
            .name(format!("multiproc-pool-w{}", popen.pid()))
            .spawn(move || {
                let Ok(writer_conn) = conn_rx.recv() else {
                    // A launch that failed: its reader reports that.
                    return;
                };
                let beat = postcard::to_allocvec(&ToWorker::Heartbeat).unwrap_or_default();
                loop {
                    let next = match heartbeat {
                        None => rx.recv().ok(),
                        // A launched worker: a heartbeat when nothing else
                        // went for an interval.
                        Some(hb) => match rx.recv_timeout(hb.interval) {
                            Ok(next) => Some(next),
                            Err(mpsc::RecvTimeoutError::Timeout) => {
                                if writer_conn.send_bytes(&beat).is_err() {
                                    // Gone: its reader reports that.
                                    break;
                                }
                                continue;
                            }
                            Err(mpsc::RecvTimeoutError::Disconnected) => None,
                        },
                    };
                    let Some((frame, chunks, handles)) = next else {
                        break;
                    };
                    let sent = if handles.is_empty() {
                        writer_conn.send_bytes(&frame)
                    } else {
                        let parts: Vec<&Carried> = handles.iter().map(|c| &**c).collect();
                        writer_conn.send_with_handles(&frame, &parts)
                    };
                    let Err(e) = sent else { continue };
                    if e.is_eof() {
                        // The worker is gone: its reader reports that.
                        break;
                    }
                    if handles.is_empty() {
                        // The frame could not be written whole: the
                        // worker would wait forever for the rest, so it
                        // is killed, and its tasks go as for a worker
                        // that died.
                        let _ = writer_popen.kill();
                        break;
                    }
                    // The handles of its tasks could not be sent (the
                    // OS's limit on fds in flight, Windows out of
                    // handles): those tasks fail now, rather than go to
                    // another worker and fail there again, and again.
                    // Nothing of the frame was written, unless the handles
                    // went out only in part: then the stream is out of
                    // step (the end is poisoned) and the worker is killed.
                    let poisoned = e.is_poisoned();
                    writer_shared.on_send_failed(id, chunks, e);
                    if poisoned {
                        let _ = writer_popen.kill();
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
                let conn = match (conn, pending) {
                    (Some(conn), _) => conn,
                    (None, Some((remote, token))) => {
                        match shared.connect_launched(&remote, token, id, &reader_popen, &cfg) {
                            Ok(conn) => {
                                let _ = conn_tx.send(Arc::clone(&conn));
                                conn
                            }
                            Err(e) => {
                                drop(conn_tx);
                                shared.on_launch_failed(id, e);
                                return;
                            }
                        }
                    }
                    (None, None) => return,
                };
                drop(conn_tx);
                // A launched worker's command and heartbeats; an SPMD
                // rank's heartbeats.
                let watch = LaunchWatch::new(reader_popen.launcher(), heartbeat);
                let end = read_worker(&conn, watch, |msg, carried| {
                    shared.on_message(id, msg, carried)
                });
                shared.on_exit(id, worker_end(&reader_popen, end));
            })
            .map_err(|e| Error::io("cannot start a pool thread", e))?;
        // Join the threads of workers already gone (finished, so this
        // doesn't wait), so a pool that keeps replacing workers doesn't
        // keep their threads (or, on Windows, their handles). A reader
        // calling this from `on_exit` is still running and stays.
        let (done, live): (Vec<_>, Vec<_>) = std::mem::take(&mut handles.threads)
            .into_iter()
            .partition(|t| t.is_finished());
        handles.threads = live;
        for t in done {
            let _ = t.join();
        }
        handles.threads.push(writer);
        handles.threads.push(reader);
        let pid = popen.pid();
        handles.workers.push(Handle {
            id,
            popen,
            host: launched_host,
            own_pid,
            tx: Some(tx),
        });
        Ok(pid)
    }
}
