//! The scheduler: the queue of chunks, the workers' chunks in flight,
//! dispatch, timeouts, and what happens when a worker ends.

use std::collections::{HashMap, VecDeque};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::protocol::{FromWorker, TaskFail, ToWorker, ToWorkerRef, WireChunkRef};
use super::results::{ChunkResults, Failure};
use super::workers::KILL_SIGNAL;
use super::{FRAME_TARGET, MAX_FAILED_STARTS, MAX_FRAME_CHUNKS};
use crate::popen::{Popen, PopenBuilder};
use crate::status::ExitStatus;

/// A chunk waiting to be sent or in flight.
pub(super) struct ChunkRec {
    pub(super) job: u64,
    pub(super) first: u64,
    pub(super) entry: &'static str,
    /// How many tasks; their arguments, each length-prefixed.
    pub(super) n: u32,
    pub(super) tasks: Vec<u8>,
}

#[derive(Default)]
pub(super) struct JobRec {
    pub(super) results: Vec<ChunkResults>,
}

pub(super) struct WorkerSlot {
    pub(super) id: u64,
    pub(super) popen: Arc<Popen>,
    pub(super) tx: Option<mpsc::Sender<Vec<u8>>>,
    /// Chunks sent, in order, with the frame that carried each.
    pub(super) inflight: VecDeque<(u64, u64)>,
    /// The last frame the worker said it started.
    pub(super) started_frame: u64,
    pub(super) head_since: Instant,
    pub(super) sent_tasks: u64,
    pub(super) ready: bool,
    pub(super) retiring: bool,
    pub(super) timed_out: bool,
}

#[derive(Clone, Copy)]
pub(super) struct EntryStats {
    /// Exponential average of the time one task takes.
    pub(super) per_task: Duration,
}

pub(super) struct State {
    pub(super) workers: Vec<WorkerSlot>,
    pub(super) queue: VecDeque<u64>,
    pub(super) chunks: HashMap<u64, ChunkRec>,
    pub(super) jobs: HashMap<u64, JobRec>,
    pub(super) stats: HashMap<&'static str, EntryStats>,
    pub(super) threads: Vec<JoinHandle<()>>,
    pub(super) next_id: u64,
    pub(super) closed: bool,
    pub(super) terminated: bool,
    pub(super) broken: Option<String>,
    pub(super) starting: usize,
    pub(super) failed_starts: u32,
    /// Where the next dispatch starts its round.
    pub(super) next_worker: usize,
}

#[derive(Clone, Debug)]
pub(super) struct Config {
    pub(super) workers: usize,
    pub(super) initializer: Option<(String, Vec<u8>)>,
    pub(super) max_tasks_per_child: Option<u64>,
    pub(super) task_timeout: Option<Duration>,
    pub(super) popen: PopenBuilder,
}

pub(super) struct Shared {
    pub(super) state: Mutex<State>,
    pub(super) cond: Condvar,
    pub(super) cfg: Config,
}

pub(super) fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl State {
    pub(super) fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Chunks per frame and chunks in flight per worker for `entry`.
    pub(super) fn pacing(&self, entry: &str) -> (usize, usize) {
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

    fn fail_chunk(&mut self, cid: u64, why: Failure) {
        if let Some(c) = self.chunks.remove(&cid) {
            if let Some(job) = self.jobs.get_mut(&c.job) {
                job.results.push(ChunkResults::failed(c.first, c.n, why));
            }
        }
    }
}

impl Shared {
    /// Sends queued chunks to workers with room, round robin from where
    /// the last call stopped (so no worker is always served first).
    pub(super) fn dispatch(&self, st: &mut State) {
        if st.queue.is_empty() && !st.workers.iter().any(|w| w.retiring) {
            return;
        }
        let now = Instant::now();
        let n = st.workers.len();
        let start = st.next_worker % n.max(1);
        for k in (start..n).chain(0..start) {
            if st.queue.is_empty() {
                break;
            }
            let w = &st.workers[k];
            if !w.ready || w.retiring || w.tx.is_none() {
                continue;
            }
            let Some(&head) = st.queue.front() else { break };
            let entry = st.chunks.get(&head).map_or("", |c| c.entry);
            let (per_frame, window) = st.pacing(entry);
            let room = window.saturating_sub(w.inflight.len()).min(per_frame);
            // A busy worker gets a new frame only when a whole one fits (or
            // the queue is shorter): topping it up chunk by chunk would
            // cost a write and a `Started` reply per chunk.
            if room == 0 || (!w.inflight.is_empty() && room < per_frame && room < st.queue.len()) {
                continue;
            }
            let frame_id = st.next_id();
            let State {
                queue,
                chunks,
                workers,
                ..
            } = &mut *st;
            let w = &mut workers[k];
            let mut entries: Vec<&str> = Vec::new();
            let mut wire = Vec::new();
            let mut tasks_sent = 0;
            while wire.len() < room {
                let Some(cid) = queue.pop_front() else {
                    break;
                };
                let Some(c) = chunks.get(&cid) else {
                    continue;
                };
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
                });
                if let Some(max) = self.cfg.max_tasks_per_child {
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
            if w.inflight.is_empty() {
                w.head_since = now;
            }
            w.inflight.extend(wire.iter().map(|c| (c.id, frame_id)));
            w.sent_tasks += tasks_sent;
            if let Some(max) = self.cfg.max_tasks_per_child {
                if w.sent_tasks >= max {
                    w.retiring = true;
                }
            }
            if let Some(tx) = &w.tx {
                let _ = tx.send(frame);
            }
            st.next_worker = k + 1;
        }
        // Retiring workers with nothing left in flight: ask them to exit.
        for w in st.workers.iter_mut() {
            if w.retiring && w.inflight.is_empty() {
                if let Some(tx) = w.tx.take() {
                    let frame = postcard::to_allocvec(&ToWorker::Shutdown).unwrap_or_default();
                    let _ = tx.send(frame);
                }
            }
        }
    }

    pub(super) fn on_message(self: &Arc<Self>, wid: u64, msg: FromWorker) {
        let mut st = lock(&self.state);
        let Some(k) = st.workers.iter().position(|w| w.id == wid) else {
            return;
        };
        match msg {
            FromWorker::Ready => {
                st.workers[k].ready = true;
                st.failed_starts = 0;
                st.starting = st.starting.saturating_sub(1);
            }
            FromWorker::InitFailed(why) => {
                st.broken.get_or_insert(why);
                st.starting = st.starting.saturating_sub(1);
            }
            FromWorker::Started(frame) => {
                let w = &mut st.workers[k];
                w.started_frame = w.started_frame.max(frame);
                if w.inflight.front().is_some_and(|&(_, f)| f == frame) {
                    w.head_since = Instant::now();
                }
            }
            FromWorker::Done { id, values, fails } => {
                let now = Instant::now();
                let w = &mut st.workers[k];
                if w.inflight.front().map(|&(c, _)| c) == Some(id) {
                    w.inflight.pop_front();
                } else {
                    w.inflight.retain(|&(c, _)| c != id);
                }
                let took = now.saturating_duration_since(w.head_since);
                w.head_since = now;
                if let Some(c) = st.chunks.remove(&id) {
                    if c.n > 0 {
                        let per_task = took / c.n;
                        let s = st.stats.entry(c.entry).or_insert(EntryStats { per_task });
                        s.per_task = (s.per_task * 3 + per_task) / 4;
                    }
                    if let Some(job) = st.jobs.get_mut(&c.job) {
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
                        job.results.push(ChunkResults {
                            first: c.first,
                            n: c.n,
                            next: 0,
                            values,
                            pos: 0,
                            fails,
                            all: None,
                        });
                    }
                }
            }
        }
        self.dispatch(&mut st);
        drop(st);
        self.cond.notify_all();
    }

    /// Worker `wid` is gone: `status` is how it ended (if known);
    /// `violation`, what it sent that made us kill it.
    pub(super) fn on_exit(
        self: &Arc<Self>,
        wid: u64,
        status: Option<ExitStatus>,
        violation: Option<String>,
    ) {
        let mut st = lock(&self.state);
        let Some(k) = st.workers.iter().position(|w| w.id == wid) else {
            return;
        };
        let w = st.workers.remove(k);
        let pid = w.popen.pid();
        if !w.ready && st.broken.is_none() && !st.terminated {
            // Killed from outside while starting, or unable to start at
            // all: retry, but not forever.
            st.starting = st.starting.saturating_sub(1);
            st.failed_starts += 1;
            if st.failed_starts >= MAX_FAILED_STARTS {
                st.broken = Some(match status {
                    Some(s) => format!(
                        "{MAX_FAILED_STARTS} workers in a row ended before they were ready; the last, {pid}, with {s}"
                    ),
                    None => format!("{MAX_FAILED_STARTS} workers in a row ended before they were ready"),
                });
            }
        }
        let started = w.started_frame;
        let mut inflight = w.inflight.into_iter().peekable();
        // The head chunk was running only if the worker had started its
        // frame; otherwise nothing in flight was started, and all of it
        // goes back to the queue.
        let head = inflight
            .next_if(|&(_, frame)| frame <= started)
            .map(|(c, _)| c);
        if let Some(head) = head {
            // A timed-out worker was killed by us; if it ended some other
            // way first (an abort, say), that is what happened.
            let killed_by_us =
                status.is_none_or(|s| s.signal() == Some(KILL_SIGNAL) || s.is_terminated());
            let why = if st.terminated {
                Failure::Terminated
            } else if let Some(why) = violation {
                Failure::Protocol { pid, why }
            } else if w.timed_out && killed_by_us {
                Failure::Timeout {
                    pid,
                    timeout: self.cfg.task_timeout.unwrap_or_default(),
                }
            } else {
                Failure::Died { pid, status }
            };
            st.fail_chunk(head, why);
        }
        // Never started: back to the front of the queue, in order.
        let rest: Vec<u64> = inflight.map(|(c, _)| c).collect();
        for cid in rest.into_iter().rev() {
            st.queue.push_front(cid);
        }
        let replace = !st.terminated
            && st.broken.is_none()
            && !(st.closed && st.queue.is_empty())
            && st.workers.len() < self.cfg.workers;
        if replace {
            if let Err(e) = self.spawn_worker(&mut st) {
                st.broken
                    .get_or_insert(format!("cannot replace worker {pid}: {e}"));
            }
        }
        // Terminated, or broken just now or before: nothing queued will
        // run (and `enqueue` refuses new work), so it fails now rather
        // than wait for a worker that will never come.
        if st.terminated || st.broken.is_some() {
            let why = if st.terminated {
                Failure::Terminated
            } else {
                Failure::Broken(st.broken.clone().unwrap_or_default())
            };
            let queued: Vec<u64> = st.queue.drain(..).collect();
            for cid in queued {
                st.fail_chunk(cid, why.clone());
            }
        }
        self.dispatch(&mut st);
        drop(st);
        self.cond.notify_all();
    }

    pub(super) fn enqueue(
        &self,
        st: &mut State,
        job: u64,
        entry: &'static str,
        first: u64,
        (n, tasks): (u32, Vec<u8>),
    ) -> std::result::Result<(), Failure> {
        if let Some(why) = &st.broken {
            return Err(Failure::Broken(why.clone()));
        }
        if st.closed {
            return Err(if st.terminated {
                Failure::Terminated
            } else {
                Failure::Closed
            });
        }
        let cid = st.next_id();
        st.chunks.insert(
            cid,
            ChunkRec {
                job,
                first,
                entry,
                n,
                tasks,
            },
        );
        st.queue.push_back(cid);
        Ok(())
    }

    /// Kills workers whose current chunk is past its deadline.
    fn enforce_timeouts(&self, st: &mut State) -> Option<Instant> {
        let timeout = self.cfg.task_timeout?;
        let now = Instant::now();
        let mut next: Option<Instant> = None;
        for w in st.workers.iter_mut() {
            let Some(&(head, _)) = w.inflight.front() else {
                continue;
            };
            let n = st.chunks.get(&head).map_or(1, |c| c.n.max(1));
            // Overflow (a huge timeout) means no deadline.
            let Some(deadline) = timeout
                .checked_mul(n)
                .and_then(|t| w.head_since.checked_add(t))
            else {
                continue;
            };
            if now >= deadline {
                if !w.timed_out {
                    w.timed_out = true;
                    let _ = w.popen.kill();
                }
            } else {
                next = Some(next.map_or(deadline, |d: Instant| d.min(deadline)));
            }
        }
        next
    }

    /// Waits for something to change (or `until`), enforcing timeouts.
    pub(super) fn wait<'a>(
        &'a self,
        st: MutexGuard<'a, State>,
        until: Option<Instant>,
    ) -> MutexGuard<'a, State> {
        let mut st = st;
        let next = self.enforce_timeouts(&mut st);
        let wake = match (next, until) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        match wake {
            None => self.cond.wait(st).unwrap_or_else(|e| e.into_inner()),
            Some(t) => {
                let d = t.saturating_duration_since(Instant::now());
                self.cond
                    .wait_timeout(st, d)
                    .unwrap_or_else(|e| e.into_inner())
                    .0
            }
        }
    }

    pub(super) fn terminate(&self) {
        let threads = {
            let mut st = lock(&self.state);
            st.terminated = true;
            st.closed = true;
            for w in st.workers.iter_mut() {
                w.tx = None;
                let _ = w.popen.kill();
            }
            let queued: Vec<u64> = st.queue.drain(..).collect();
            for cid in queued {
                st.fail_chunk(cid, Failure::Terminated);
            }
            std::mem::take(&mut st.threads)
        };
        self.cond.notify_all();
        for t in threads {
            let _ = t.join();
        }
    }
}
