//! A worker's side of a pool over TCP, once it joined (a launched
//! worker, or an SPMD rank): [`serve_pool`] runs the pool's worker loop
//! while a thread of its own reads the pool's frames ([`watch_parent`]),
//! takes its heartbeats and exits the worker when the pool is gone
//! ([`parent_gone`]), and another sends the worker's heartbeats.

use std::sync::{mpsc, Arc};

use crate::connection::Connection;
use crate::pool::protocol::{worker_loop, FromWorker, Heartbeat, InFrame, ToWorker, WorkerConfig};

/// Which kind of worker serves a pool over TCP.
#[derive(Clone, Copy, Debug)]
pub(in crate::pool) enum Served {
    /// Started by a launcher command: the connection's end exits with
    /// [`PARENT_GONE`](crate::exit_code::PARENT_GONE).
    Launched,
    /// An SPMD rank: the connection's end is the normal end of its work,
    /// and exits with 0.
    Rank,
}

impl Served {
    /// The exit code when the connection ends.
    fn eof_exit(self) -> i32 {
        match self {
            Served::Launched => crate::exit_code::PARENT_GONE,
            Served::Rank => crate::exit_code::SUCCESS,
        }
    }

    /// What it calls itself on stderr.
    fn name(self) -> &'static str {
        match self {
            Served::Launched => "launched worker",
            Served::Rank => "SPMD rank",
        }
    }
}

/// A worker that joined a pool over TCP (launched, or an SPMD rank): runs
/// the pool's worker loop until the pool says `Shutdown`; if the
/// connection ends first, or no heartbeat comes, the process exits at
/// once (see [`watch_parent`]).
pub(in crate::pool) fn serve_pool(conn: Connection, cfg: WorkerConfig, who: Served) {
    let conn = Arc::new(conn);
    let frames = watch_parent(&conn, who, cfg.heartbeat);
    worker_loop(conn, cfg, move || frames.recv().ok());
}

/// In a worker over TCP: the pool is gone, or gave it up. Exits at once
/// with `code`, in the middle of a task too: nobody is left to take its
/// result, and a worker whose launcher command the pool killed (`ssh`,
/// `sh -c` without `exec`) must not run on. Says why on stderr, unless
/// `why` is `None`: the connection ended, which is how a pool ends such a
/// worker (its drop, a time limit), not worth a line each time.
fn parent_gone(who: Served, why: Option<&str>, code: i32) -> ! {
    if let Some(why) = why {
        eprintln!(
            "multiproc {} {}: {why}; exiting",
            who.name(),
            std::process::id()
        );
    }
    std::process::exit(code)
}

/// In a worker over TCP: a thread reads the parent's frames and hands
/// them to the worker's loop, so that the end of the connection is seen
/// while a task runs (the worker then exits, see [`parent_gone`]). It
/// stops after `Shutdown`, which the loop obeys. The end of the connection
/// exits with [`Served::eof_exit`] ([`PARENT_GONE`](crate::exit_code::PARENT_GONE)
/// for a launched worker; 0 for an SPMD rank, whose pool ending is its
/// normal end); an error reading it with `PARENT_GONE`. With `heartbeat`
/// (launched workers and SPMD ranks), it takes the parent's heartbeats
/// and exits the worker (`PARENT_GONE`) when nothing came for the
/// timeout, and a second thread sends the worker's heartbeats (each a
/// whole message: the connection's send lock keeps them from mixing with
/// the loop's answers).
fn watch_parent(
    conn: &Arc<Connection>,
    who: Served,
    heartbeat: Option<Heartbeat>,
) -> mpsc::Receiver<InFrame> {
    let (tx, rx) = mpsc::channel();
    let reader = Arc::clone(conn);
    let shutdown = postcard::to_allocvec(&ToWorker::Shutdown).unwrap_or_default();
    let beat = postcard::to_allocvec(&ToWorker::Heartbeat).unwrap_or_default();
    let watcher = std::thread::Builder::new()
        .name("multiproc-pool-parent".into())
        .spawn(move || loop {
            if let Some(hb) = heartbeat {
                if let Ok(false) = reader.poll(Some(hb.timeout)) {
                    parent_gone(
                        who,
                        Some(&format!("no heartbeat from the pool for {:?}", hb.timeout)),
                        crate::exit_code::PARENT_GONE,
                    );
                }
            }
            match reader.recv_frame() {
                Ok((frame, _)) if frame == beat => {}
                Ok((frame, carried)) => {
                    let last = frame == shutdown;
                    if tx.send((frame, carried)).is_err() || last {
                        return;
                    }
                }
                Err(e) if e.is_eof() => parent_gone(who, None, who.eof_exit()),
                Err(e) => parent_gone(
                    who,
                    Some(&format!("cannot read from the pool: {e}")),
                    crate::exit_code::PARENT_GONE,
                ),
            }
        });
    if let Err(e) = watcher {
        parent_gone(
            who,
            Some(&format!("cannot start a thread: {e}")),
            crate::exit_code::PARENT_GONE,
        );
    }
    if let Some(hb) = heartbeat {
        let sender = Arc::clone(conn);
        let beat = postcard::to_allocvec(&FromWorker::Heartbeat).unwrap_or_default();
        let beating = std::thread::Builder::new()
            .name("multiproc-pool-heartbeat".into())
            .spawn(move || loop {
                std::thread::sleep(hb.interval);
                // The parent gone: the watcher sees it too.
                if sender.send_bytes(&beat).is_err() {
                    return;
                }
            });
        if let Err(e) = beating {
            parent_gone(
                who,
                Some(&format!("cannot start a thread: {e}")),
                crate::exit_code::PARENT_GONE,
            );
        }
    }
    rx
}
