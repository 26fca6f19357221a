//! Sending work and taking answers: [`Scheduler::dispatch`] (queued
//! chunks to the workers with room, round robin, in frames), its pacing
//! (chunks per frame and in flight from the measured time per task), and
//! what a worker says (ready, started a frame, done, over its memory) or a
//! frame that could not be sent.

use std::sync::Arc;

use super::{shutdown_frame, EntryStats, Scheduler, WorkerId, Workers};
use crate::codec::handles::{Carried, MAX_HANDLES};
use crate::error::Result;
use crate::pool::protocol::{FromWorker, TaskFail, ToWorkerRef, WireChunkRef};
use crate::pool::results::{Broken, ChunkResults, Failure, ResultHandles};
use crate::pool::{FRAME_TARGET, MAX_FRAME_CHUNKS};

impl Scheduler {
    /// Chunks per frame and chunks in flight per worker for `entry`.
    pub(in crate::pool) fn pacing(&self, entry: &str) -> (usize, usize) {
        let per_chunk_task = self.stats.get(entry).map(|s| s.per_task);
        match per_chunk_task {
            None => (1, 2),
            Some(t) => {
                let n = (FRAME_TARGET.as_nanos() / t.as_nanos().max(1)) as usize;
                let n = n.clamp(1, MAX_FRAME_CHUNKS);
                (n, 2 * n)
            }
        }
    }

    /// Whether a chunk just queued should be sent now rather than with the
    /// next frame the workers' replies trigger: some ready worker has
    /// fewer than two chunks in flight (so it would idle, or run its last
    /// chunk with nothing behind it, until then). Otherwise the chunk
    /// waits in the queue, and `on_message` sends it with the chunks
    /// queued after it, in one frame: a caller that `submit`s many tasks
    /// in a row then pays for a frame (a write, a wake-up of the writer
    /// thread, a `Started` reply) per frame, not per task.
    pub(in crate::pool) fn wants_dispatch(&self) -> bool {
        self.workers
            .iter()
            .any(|w| w.ready && w.open && !w.retiring && w.inflight.len() < 2)
    }

    /// Sends queued chunks to workers with room, round robin from where
    /// the last call stopped (so no worker is always served first).
    pub(in crate::pool) fn dispatch(&mut self, io: &mut impl Workers) {
        if self.queue.is_empty() && !self.workers.iter().any(|w| w.retiring) {
            return;
        }
        let now = io.now();
        let n = self.workers.len();
        let start = self.next_worker % n.max(1);
        for k in (start..n).chain(0..start) {
            if self.queue.is_empty() {
                break;
            }
            let w = &self.workers[k];
            if !w.ready || w.retiring || !w.open {
                continue;
            }
            let Some(&head) = self.queue.front() else {
                break;
            };
            let entry = self.chunks.get(&head).map_or("", |c| c.entry);
            let (per_frame, window) = self.pacing(entry);
            let room = window.saturating_sub(w.inflight.len()).min(per_frame);
            // A busy worker gets a new frame only when a whole one fits (or
            // the queue is shorter): topping it up chunk by chunk would
            // cost a write and a `Started` reply per chunk.
            if room == 0 || (!w.inflight.is_empty() && room < per_frame && room < self.queue.len())
            {
                continue;
            }
            let frame_id = self.next_id();
            let Scheduler {
                queue,
                chunks,
                workers,
                limits,
                ..
            } = &mut *self;
            let w = &mut workers[k];
            let mut entries: Vec<&str> = Vec::new();
            let mut wire = Vec::new();
            let mut carried: Vec<Arc<Carried>> = Vec::new();
            let mut handles_sent = 0;
            let mut tasks_sent = 0;
            while wire.len() < room {
                let Some(&cid) = queue.front() else {
                    break;
                };
                let Some(c) = chunks.get(&cid) else {
                    queue.pop_front();
                    continue;
                };
                // A frame carries at most MAX_HANDLES handles (a chunk
                // never has more, see `HandlesBuilder`'s callers).
                if handles_sent + c.handles.len() > MAX_HANDLES && !wire.is_empty() {
                    break;
                }
                queue.pop_front();
                handles_sent += c.handles.len();
                carried.extend(c.handles.carried.clone());
                let e = match entries.iter().position(|x| *x == c.entry) {
                    Some(i) => i,
                    None => {
                        entries.push(c.entry);
                        entries.len() - 1
                    }
                };
                tasks_sent += u64::from(c.n);
                wire.push(WireChunkRef {
                    id: cid,
                    entry: e as u16,
                    tasks: &c.tasks,
                    handles: &c.handles.counts,
                });
                if let Some(max) = limits.max_tasks_per_child {
                    if w.sent_tasks + tasks_sent >= max {
                        break;
                    }
                }
            }
            if wire.is_empty() {
                continue;
            }
            let frame = postcard::to_allocvec(&ToWorkerRef::Work {
                frame: frame_id,
                entries: &entries,
                chunks: &wire,
            })
            .unwrap_or_default();
            let armed = w.inflight.is_empty();
            if armed {
                w.head_since = now;
            }
            w.inflight.extend(wire.iter().map(|c| (c.id, frame_id)));
            w.sent_tasks += tasks_sent;
            if let Some(max) = limits.max_tasks_per_child {
                if w.sent_tasks >= max {
                    w.retiring = true;
                }
            }
            if w.open && carried.is_empty() {
                io.send(w.id, frame);
            } else if w.open {
                io.send_with(w.id, frame, wire.iter().map(|c| c.id).collect(), carried);
            }
            self.next_worker = k + 1;
            if armed {
                self.arm(io, k);
            }
        }
        // Retiring workers with nothing left in flight: ask them to exit.
        for w in self.workers.iter_mut() {
            if w.retiring && w.inflight.is_empty() && w.open {
                w.open = false;
                io.send(w.id, shutdown_frame());
                io.close(w.id);
            }
        }
    }

    /// Worker `wid` sent `msg`, without handles.
    #[cfg(test)]
    pub(in crate::pool) fn on_message(
        &mut self,
        io: &mut impl Workers,
        wid: WorkerId,
        msg: FromWorker,
    ) {
        self.on_message_with(io, wid, msg, Ok(Carried::default()));
    }

    /// Worker `wid` sent `msg`, and with it `carried` (or they could not
    /// be taken: why).
    pub(in crate::pool) fn on_message_with(
        &mut self,
        io: &mut impl Workers,
        wid: WorkerId,
        msg: FromWorker,
        carried: Result<Carried>,
    ) {
        let Some(k) = self.workers.iter().position(|w| w.id == wid) else {
            return;
        };
        match msg {
            // The driver's reader takes them; one that got here is news
            // of nothing.
            FromWorker::Heartbeat => {}
            FromWorker::Ready => {
                log::debug!("multiproc pool: worker {} ready", self.workers[k].pid);
                self.workers[k].ready = true;
                self.failed_starts = 0;
                self.starting = self.starting.saturating_sub(1);
            }
            FromWorker::InitFailed(why) => {
                self.broken.get_or_insert(Broken::new(why));
                self.starting = self.starting.saturating_sub(1);
            }
            FromWorker::Started(frame) => {
                let w = &mut self.workers[k];
                w.started_frame = w.started_frame.max(frame);
                if w.inflight.front().is_some_and(|&(_, f)| f == frame) {
                    w.head_since = io.now();
                    self.arm(io, k);
                }
                self.kill_if_running_cancelled(io, k);
            }
            FromWorker::Recycle { rss } => {
                let w = &mut self.workers[k];
                log::info!(
                    "multiproc pool: worker {} uses {rss} bytes, over max_memory_per_child; replacing it",
                    w.pid
                );
                w.recycled = true;
                w.retiring = true;
                if w.open {
                    w.open = false;
                    io.close(w.id);
                }
            }
            FromWorker::Done {
                id,
                values,
                fails,
                handles,
            } => {
                let now = io.now();
                let w = &mut self.workers[k];
                if w.inflight.front().map(|&(c, _)| c) == Some(id) {
                    w.inflight.pop_front();
                } else {
                    w.inflight.retain(|&(c, _)| c != id);
                }
                let took = now.saturating_duration_since(w.head_since);
                w.head_since = now;
                let more = !w.inflight.is_empty();
                if more {
                    self.arm(io, k);
                    self.kill_if_running_cancelled(io, k);
                }
                if let Some(c) = self.chunks.remove(&id) {
                    let failed = (fails.len() as u64).min(u64::from(c.n));
                    self.counts.tasks_done += u64::from(c.n) - failed;
                    self.counts.tasks_failed += failed;
                    if c.n > 0 {
                        let per_task = took / c.n;
                        let s = self.stats.entry(c.entry).or_insert(EntryStats { per_task });
                        s.per_task = (s.per_task * 3 + per_task) / 4;
                    }
                    // (Dropped in `deliver` if nobody waits for it.)
                    let fails = fails
                        .into_iter()
                        .map(|(i, f)| {
                            (
                                i,
                                match f {
                                    TaskFail::Panic(p) => Failure::Panic(p),
                                    TaskFail::BadArgs(m) => Failure::BadArgs(m),
                                    TaskFail::BadResult(m) => Failure::BadResult(m),
                                },
                            )
                        })
                        .collect();
                    let results = ChunkResults {
                        first: c.first,
                        n: c.n,
                        next: 0,
                        values,
                        pos: 0,
                        fails,
                        all: None,
                        handles: ResultHandles::new(c.n, handles, carried),
                    };
                    self.deliver(c, results);
                }
            }
        }
        self.dispatch(io);
    }

    /// The frame holding `chunks` could not be written to worker `wid`
    /// with its handles (`why`): it never reached the worker, so its
    /// chunks fail now — sent again they would most likely fail again
    /// (the OS's limit on fds in flight, Windows out of handles) — and are
    /// no longer in flight there. The worker goes on unless its stream was
    /// left out of step (then the pool's writer kills it, and its end is
    /// reported as usual).
    pub(in crate::pool) fn on_send_failed(
        &mut self,
        io: &mut impl Workers,
        wid: WorkerId,
        chunks: Vec<u64>,
        why: crate::error::Error,
    ) {
        if let Some(w) = self.workers.iter_mut().find(|w| w.id == wid) {
            w.inflight.retain(|(c, _)| !chunks.contains(c));
        }
        let why = Arc::new(why);
        for cid in chunks {
            let Some(entry) = self.chunks.get(&cid).map(|c| c.entry) else {
                continue;
            };
            let source = crate::encode::EncodeError::Handle(Arc::clone(&why));
            self.fail_chunk(cid, Failure::Encode { entry, source });
        }
        self.dispatch(io);
    }
}
