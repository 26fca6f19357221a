//! A worker's life as the scheduler sees it: its start, a launched
//! worker's news (connected back, lost, its launch failed), and its end
//! (its running chunk failed, the rest requeued; replaced, or not in an
//! SPMD pool, or the pool broken).

use std::collections::VecDeque;
use std::sync::Arc;

use super::control::KilledFor;
use super::{Scheduler, Worker, WorkerId, Workers, KILL_SIGNAL};
use crate::error::{Error, Result};
use crate::pool::results::{Broken, Failure};
use crate::pool::MAX_FAILED_STARTS;
use crate::status::ExitStatus;

impl Scheduler {
    /// Starts one more worker.
    pub(in crate::pool) fn start_worker(&mut self, io: &mut impl Workers) -> Result<()> {
        let id = self.next_id();
        let pid = io.spawn(id)?;
        self.counts.workers_started += 1;
        log::debug!("multiproc pool: worker {pid} spawned");
        self.starting += 1;
        self.workers.push(Worker {
            id,
            pid,
            host: io.host(id),
            own_pid: io.own_pid(id),
            open: true,
            inflight: VecDeque::new(),
            started_frame: 0,
            head_since: io.now(),
            sent_tasks: 0,
            ready: false,
            retiring: false,
            killed_for: None,
            cancelled: Vec::new(),
            recycled: false,
            lost: None,
            in_place_of: None,
        });
        Ok(())
    }

    /// The driver gives launched worker `wid` up, for `why` (its end
    /// follows through [`on_exit`](Self::on_exit), whose errors say why).
    pub(in crate::pool) fn note_lost(&mut self, wid: WorkerId, why: String) {
        if let Some(w) = self.workers.iter_mut().find(|w| w.id == wid) {
            w.lost = Some(why);
        }
    }

    /// Launched worker `wid` connected back: it runs on `host`, as `pid`
    /// there.
    pub(in crate::pool) fn note_launched(&mut self, wid: WorkerId, host: Arc<str>, pid: u32) {
        if let Some(w) = self.workers.iter_mut().find(|w| w.id == wid) {
            w.host = Some(host);
            w.own_pid = Some(pid);
        }
    }

    /// The launch of worker `wid` (its command started by
    /// [`Workers::spawn`], its worker yet to connect back) failed: `why`.
    /// As when the start itself fails: one of the pool's first workers
    /// fails the pool's build (with `why`, see
    /// [`take_start_error`](Self::take_start_error)), a replacement breaks
    /// the pool — unless the pool was terminated, which killed it.
    pub(in crate::pool) fn on_launch_failed(
        &mut self,
        io: &mut impl Workers,
        wid: WorkerId,
        why: Error,
    ) {
        let Some(k) = self.workers.iter().position(|w| w.id == wid) else {
            return;
        };
        let w = self.workers.remove(k);
        self.starting = self.starting.saturating_sub(1);
        // Counted as it started; not a worker after all.
        self.counts.workers_started = self.counts.workers_started.saturating_sub(1);
        if let Some(old) = w.in_place_of {
            self.counts.workers_replaced = self.counts.workers_replaced.saturating_sub(1);
            if !self.terminated && self.broken.is_none() {
                log::warn!("multiproc pool: cannot replace worker {old}: {why}");
                self.broken = Some(Broken {
                    why: format!("cannot replace worker {old}: {why}"),
                    cause: Some(Arc::new(why)),
                });
            }
        } else if !self.terminated && self.broken.is_none() {
            self.broken = Some(Broken::new(format!("cannot start a worker: {why}")));
            self.start_error = Some(why);
        }
        let failure = if self.terminated {
            Some(Failure::Terminated)
        } else {
            self.broken.clone().map(Failure::Broken)
        };
        if let Some(failure) = failure {
            let queued: Vec<u64> = self.queue.drain(..).collect();
            for cid in queued {
                self.fail_chunk(cid, failure.clone());
            }
        }
        self.dispatch(io);
    }

    /// Why the launch of one of the pool's first workers failed, if it
    /// did ([`on_launch_failed`](Self::on_launch_failed)).
    pub(in crate::pool) fn take_start_error(&mut self) -> Option<Error> {
        self.start_error.take()
    }

    /// Worker `wid` is gone: `status` is how it ended (if known);
    /// `violation`, what it sent that made us kill it.
    pub(in crate::pool) fn on_exit(
        &mut self,
        io: &mut impl Workers,
        wid: WorkerId,
        status: Option<ExitStatus>,
        violation: Option<String>,
    ) {
        let Some(k) = self.workers.iter().position(|w| w.id == wid) else {
            return;
        };
        let w = self.workers.remove(k);
        let pid = w.pid;
        self.note_end(&w, status, violation.as_deref());
        if !w.ready && self.broken.is_none() && !self.terminated {
            // Killed from outside while starting, or unable to start at
            // all: retry, but not forever.
            self.starting = self.starting.saturating_sub(1);
            self.failed_starts += 1;
            if self.failed_starts >= MAX_FAILED_STARTS {
                self.broken = Some(Broken::new(match status {
                    Some(s) => format!(
                        "{MAX_FAILED_STARTS} workers in a row ended before they were ready; the last, {pid}, with {s}"
                    ),
                    None => format!("{MAX_FAILED_STARTS} workers in a row ended before they were ready"),
                }));
            }
        }
        let started = w.started_frame;
        let mut inflight = w.inflight.into_iter().peekable();
        // The head chunk was running only if the worker had started its
        // frame; otherwise nothing in flight was started, and all of it
        // goes back to the queue.
        // A recycled worker said it starts nothing more after its last
        // result: none of it was started.
        let head = inflight
            .next_if(|&(_, frame)| frame <= started && !w.recycled)
            .map(|(c, _)| c);
        if let Some(head) = head {
            // A timed-out worker was killed by us; if it ended some other
            // way first (an abort, say), that is what happened.
            let killed_by_us =
                status.is_none_or(|s| s.signal() == Some(KILL_SIGNAL) || s.is_terminated());
            let why = if self.terminated {
                Failure::Terminated
            } else if let Some(why) = violation {
                Failure::Protocol { pid, why }
            } else if let (Some(KilledFor::Timeout(timeout)), true) = (w.killed_for, killed_by_us) {
                Failure::Timeout { pid, timeout }
            } else {
                Failure::Died {
                    pid,
                    host: w.host.clone(),
                    own_pid: w.own_pid,
                    status,
                    cause: w.lost.clone(),
                }
            };
            self.fail_chunk(head, why);
        }
        // Never started: back to the front of the queue, in order.
        let rest: Vec<u64> = inflight.map(|(c, _)| c).collect();
        for cid in rest.into_iter().rev() {
            self.queue.push_front(cid);
        }
        let wanted = !self.terminated
            && self.broken.is_none()
            && !(self.closed && self.queue.is_empty())
            && self.workers.len() < self.limits.workers;
        let replace = wanted && self.replaces;
        if wanted && !self.replaces && self.workers.is_empty() {
            let host = w
                .host
                .as_deref()
                .map(|h| format!(" on host {h}"))
                .unwrap_or_default();
            self.broken = Some(Broken::new(format!(
                "every worker is gone and none can be started in its place (the pool's \
                 workers were the job's other ranks); the last, {pid}{host}, {}",
                match status {
                    Some(s) => format!("ended with {s}"),
                    None => "ended its connection".to_string(),
                }
            )));
        }
        if replace {
            match self.start_worker(io) {
                Ok(()) => {
                    self.counts.workers_replaced += 1;
                    let new = self.workers.last_mut().map_or(0, |w| {
                        w.in_place_of = Some(pid);
                        w.pid
                    });
                    log::info!("multiproc pool: worker {pid} replaced by worker {new}");
                }
                Err(e) => {
                    log::warn!("multiproc pool: cannot replace worker {pid}: {e}");
                    self.broken.get_or_insert(Broken {
                        why: format!("cannot replace worker {pid}: {e}"),
                        cause: Some(Arc::new(e)),
                    });
                }
            }
        }
        // Terminated, or broken just now or before: nothing queued will
        // run (and `enqueue` refuses new work), so it fails now rather
        // than wait for a worker that will never come.
        let why = if self.terminated {
            Some(Failure::Terminated)
        } else {
            self.broken.clone().map(Failure::Broken)
        };
        if let Some(why) = why {
            let queued: Vec<u64> = self.queue.drain(..).collect();
            for cid in queued {
                self.fail_chunk(cid, why.clone());
            }
        }
        self.dispatch(io);
    }
}
