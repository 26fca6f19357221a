//! The scheduler's per-task control and lifecycle: time limits (the
//! pool's and a chunk's own, and when to wake the pool's timer),
//! cancelling a chunk, and the counts and log events of workers' ends.

use std::time::{Duration, Instant};

use super::{Failure, Scheduler, Worker, Workers};
use crate::status::ExitStatus;

/// What the pool did so far (see [`PoolStats`](crate::PoolStats)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(in crate::pool) struct Counts {
    pub(in crate::pool) tasks_done: u64,
    pub(in crate::pool) tasks_failed: u64,
    pub(in crate::pool) tasks_cancelled: u64,
    pub(in crate::pool) tasks_timed_out: u64,
    pub(in crate::pool) workers_started: u64,
    pub(in crate::pool) workers_died: u64,
    pub(in crate::pool) workers_replaced: u64,
}

/// Why the pool killed a worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum KilledFor {
    /// Its running chunk passed this limit (per task).
    Timeout(Duration),
    /// Its running chunk was cancelled.
    Cancel,
}

impl Scheduler {
    /// What the pool did so far.
    pub(in crate::pool) fn counts(&self) -> Counts {
        self.counts
    }

    /// Cancels chunk `cid` (of a `submit`): one still queued leaves the
    /// queue; one in flight is marked, and its worker is killed as soon
    /// as the scheduler learns it runs that chunk (at once if it does
    /// now). Its job gets [`Failure::Cancelled`] now. False when the
    /// chunk is no longer there (done or failed: its result is in).
    pub(in crate::pool) fn cancel_chunk(&mut self, io: &mut impl Workers, cid: u64) -> bool {
        if !self.chunks.contains_key(&cid) {
            return false;
        }
        if let Some(i) = self.queue.iter().position(|&c| c == cid) {
            self.queue.remove(i);
            log::info!("multiproc pool: a queued task was cancelled");
        } else if let Some(k) = self
            .workers
            .iter()
            .position(|w| w.inflight.iter().any(|&(c, _)| c == cid))
        {
            self.workers[k].cancelled.push(cid);
            self.kill_if_running_cancelled(io, k);
        }
        self.fail_chunk(cid, Failure::Cancelled);
        true
    }

    /// Worker `k` runs a chunk that was cancelled: it is killed.
    pub(super) fn kill_if_running_cancelled(&mut self, io: &mut impl Workers, k: usize) {
        let w = &mut self.workers[k];
        if w.cancelled.is_empty() || w.killed_for.is_some() || !w.busy() {
            return;
        }
        let Some(&(head, _)) = w.inflight.front() else {
            return;
        };
        if w.cancelled.contains(&head) {
            w.killed_for = Some(KilledFor::Cancel);
            log::info!(
                "multiproc pool: killing worker {} to stop the cancelled task it runs",
                w.pid
            );
            io.kill(w.id);
        }
    }

    /// When worker `k`'s running chunk passes its time limit, if it has
    /// one.
    fn deadline(&self, k: usize) -> Option<Instant> {
        let w = &self.workers[k];
        let &(head, _) = w.inflight.front()?;
        // A cancelled chunk has no deadline (nor a record).
        let c = self.chunks.get(&head)?;
        let timeout = c.timeout.or(self.limits.task_timeout)?;
        // Overflow (a huge timeout) means no deadline.
        timeout
            .checked_mul(c.n.max(1))
            .and_then(|t| w.head_since.checked_add(t))
    }

    /// Worker `k` started a new running chunk: wakes the timer if that
    /// chunk's deadline comes before the one it sleeps towards.
    pub(super) fn arm(&mut self, io: &mut impl Workers, k: usize) {
        if !self.timed {
            return;
        }
        if let Some(d) = self.deadline(k) {
            if self.armed.is_none_or(|a| d < a) {
                self.armed = Some(d);
                io.wake_timer();
            }
        }
    }

    /// Kills workers whose running chunk is past its deadline; the next
    /// deadline, if any, which the timer sleeps towards (it is woken
    /// through [`Workers::wake_timer`] if an earlier one appears).
    pub(in crate::pool) fn enforce_timeouts(&mut self, io: &mut impl Workers) -> Option<Instant> {
        self.armed = None;
        if !self.timed {
            return None;
        }
        let now = io.now();
        let mut next: Option<Instant> = None;
        for k in 0..self.workers.len() {
            let Some(deadline) = self.deadline(k) else {
                continue;
            };
            let w = &mut self.workers[k];
            if now >= deadline {
                if w.killed_for.is_none() {
                    let head = w.inflight.front().map(|&(c, _)| c);
                    let timeout = head
                        .and_then(|c| self.chunks.get(&c))
                        .and_then(|c| c.timeout.or(self.limits.task_timeout))
                        .unwrap_or_default();
                    w.killed_for = Some(KilledFor::Timeout(timeout));
                    log::info!(
                        "multiproc pool: a task on worker {} ran past its timeout of {timeout:?}; killing the worker",
                        w.pid
                    );
                    io.kill(w.id);
                }
            } else {
                next = Some(next.map_or(deadline, |d: Instant| d.min(deadline)));
            }
        }
        self.armed = next;
        next
    }

    /// Worker `w` ended: counts and logs how.
    pub(super) fn note_end(
        &mut self,
        w: &Worker,
        status: Option<ExitStatus>,
        violation: Option<&str>,
    ) {
        let pid = w.pid;
        // Ended while the pool still needed it: not asked to exit (a
        // shutdown, a retirement, a recycling), not terminated.
        let died = w.open && !self.terminated;
        if died {
            self.counts.workers_died += 1;
            let how = status.map_or_else(|| "status unknown".to_string(), |s| s.to_string());
            let why = match (violation, w.killed_for) {
                (Some(v), _) => format!("killed for breaking the pool protocol: {v}"),
                (None, _) if w.lost.is_some() => {
                    format!("given up: {}", w.lost.as_deref().unwrap_or_default())
                }
                (None, Some(KilledFor::Timeout(t))) => {
                    format!("killed: its task ran past its timeout of {t:?}")
                }
                (None, Some(KilledFor::Cancel)) => "killed: its task was cancelled".to_string(),
                (None, None) if !w.ready => "ended before it was ready".to_string(),
                (None, None) => "ended unexpectedly".to_string(),
            };
            log::warn!("multiproc pool: worker {pid} died ({how}): {why}");
        } else {
            log::debug!("multiproc pool: worker {pid} exited");
        }
    }
}

#[cfg(test)]
mod tests;
