//! [`Task`], one task with options of its own, and [`PoolStats`].

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::results::Slot;
use super::workers::lock;
use super::{protocol, AsyncResult, Pool};
#[cfg(doc)]
use super::{Imap, PoolBuilder};
use crate::codec::handles;
use crate::encode;
use crate::error::{Error, Kind};
use crate::spawn;

/// One task with options of its own, from [`Pool::task`]; it runs once
/// [`submit`](Task::submit)ted.
#[must_use = "a task does nothing until it is submitted"]
pub struct Task<'p, A, R> {
    pub(super) pool: &'p Pool,
    pub(super) entry: &'static str,
    pub(super) arg: A,
    pub(super) timeout: Option<Duration>,
    pub(super) _r: PhantomData<fn() -> R>,
}

impl<A, R> fmt::Debug for Task<'_, A, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Task")
            .field("entry", &self.entry)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl<A: Serialize, R: DeserializeOwned> Task<'_, A, R> {
    /// The task's own time limit, in place of the pool's
    /// ([`PoolBuilder::task_timeout`]): running longer, it fails with
    /// [`Error::is_timeout`] and its worker is killed and replaced. Counted
    /// from when its worker is done with the task before it (or, for a
    /// worker with nothing to do, from when it is sent). The pool enforces it whether or not a
    /// thread waits for the result. `Duration::MAX` (any timeout too long
    /// to be a deadline) is no limit, also when the pool has one.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Queues the task; returns at once.
    pub fn submit(self) -> AsyncResult<R> {
        let Task {
            pool,
            entry: name,
            arg,
            timeout,
            ..
        } = self;
        let shared = &pool.shared;
        // Encoded before the pool's lock is taken: the reader threads wait
        // for nobody's serializer.
        let (encoded, carried) = handles::collecting(|| encode::to_vec(&arg));
        let task = match encoded {
            _ if spawn::find_entry(name).is_none() => {
                Err(Error::new(Kind::UnknownEntry(name.to_string())))
            }
            Err(e) => Err(Error::new(Kind::Encode {
                entry: name.to_string(),
                source: e,
            })),
            // Handles can't reach launched workers.
            Ok(_) if !carried.is_empty() && shared.spawner.over_network() => {
                Err(Error::new(Kind::Encode {
                    entry: name.to_string(),
                    source: super::launcher::handles_refused(),
                }))
            }
            Ok(payload) => {
                let mut task = Vec::with_capacity(payload.len() + 2);
                protocol::put_frame(&mut task, &payload);
                let mut h = protocol::HandlesBuilder::default();
                h.add(0, carried);
                Ok((task, h.finish(1)))
            }
        };
        let slot = Arc::new(Slot::default());
        let (job, chunk, early) = match task {
            Err(e) => (0, 0, Some(e)),
            Ok((task, handles)) => {
                let mut st = lock(&shared.state);
                // A time limit of its own needs the pool's timer.
                let timer = match timeout {
                    Some(_) => shared.start_timer(&mut st),
                    None => Ok(()),
                };
                match timer.map(|()| {
                    st.sched
                        .enqueue_slot(name, task, handles, Arc::clone(&slot), timeout)
                }) {
                    Err(e) => (0, 0, Some(e)),
                    Ok(Err(why)) => (0, 0, Some(why.into_error())),
                    Ok(Ok((job, chunk))) => {
                        if st.sched.wants_dispatch() {
                            shared.dispatch(&mut st);
                        }
                        (job, chunk, None)
                    }
                }
            }
        };
        AsyncResult {
            shared: Arc::clone(shared),
            job,
            chunk,
            slot,
            done: early.map(Err),
            _r: PhantomData,
        }
    }
}

/// What a pool did so far, from [`Pool::stats`]: counts since the pool
/// was built.
///
/// Each task the pool queued ends in one of the four task counts once
/// its result is in (whether or not anyone takes it): `tasks_done` (it
/// returned a value), `tasks_timed_out`, `tasks_cancelled`, or
/// `tasks_failed` (any other error: a panic, an input the worker could
/// not decode, a result it could not encode, its worker died, the pool
/// was terminated or broken before it ran). Tasks refused before they
/// were queued (an input that can't be serialized, an unknown entry, a
/// closed pool) are not counted. The queued tasks of an [`Imap`] dropped
/// before they were sent count as cancelled.
///
/// A worker counts in `workers_started` when its process was started
/// (the first ones and every replacement), in `workers_died` when it
/// ended while the pool still needed it — it crashed or was killed from
/// outside, or the pool killed it for a timeout, a cancel or a protocol
/// violation (not one asked to exit: by [`Pool::close`],
/// `max_tasks_per_child`, `max_memory_per_child`, nor those killed by
/// [`Pool::terminate`]) — and in `workers_replaced` when the pool
/// started another in its place.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolStats {
    /// Tasks that returned a value.
    pub tasks_done: u64,
    /// Tasks that failed other than by a timeout or a cancel.
    pub tasks_failed: u64,
    /// Tasks cancelled ([`AsyncResult::cancel`], a dropped [`Imap`]'s
    /// unsent tasks).
    pub tasks_cancelled: u64,
    /// Tasks that ran past their time limit.
    pub tasks_timed_out: u64,
    /// Worker processes started.
    pub workers_started: u64,
    /// Workers that ended while the pool needed them.
    pub workers_died: u64,
    /// Workers started in place of one that ended (died, or retired by
    /// `max_tasks_per_child` / `max_memory_per_child`).
    pub workers_replaced: u64,
}
