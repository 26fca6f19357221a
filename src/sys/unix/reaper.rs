//! The reaper: a thread that waits for children dropped while still
//! running, so that they never stay zombies.

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};

use super::{channel::nonblocking_pipe, child::Child, lock};

/// Has `child` reaped once it exits, although others still hold it (a
/// daemonic child dropped by its `Process` stays in the daemon list until
/// this process exits, so its `Drop` doesn't run).
pub(crate) fn reap_in_background(child: &Arc<Child>) {
    if matches!(child.try_reap(&mut lock(&child.status)), Ok(None)) {
        REAPER.adopt(Arc::clone(child));
    }
}

/// Children that were dropped while running, reaped once they exit by a
/// background thread, so that none stays a zombie.
///
/// Dropping never fails: the thread and its wake pipe are created on first
/// use, and when that isn't possible (the fd limit, the thread or process
/// limit) the child stays listed, and the list is swept without blocking
/// at the next drop or spawn, which also try to start the thread again.
/// Until then an exited child stays a zombie.
pub(super) struct Reaper {
    children: Mutex<Vec<Arc<Child>>>,
    added: Condvar,
    /// Written to when a child is added, so that the thread polls it too.
    wake: OnceLock<(OwnedFd, OwnedFd)>,
    /// The thread runs (set once, under `start`).
    started: AtomicBool,
    start: Mutex<()>,
}

pub(super) static REAPER: Reaper = Reaper {
    children: Mutex::new(Vec::new()),
    added: Condvar::new(),
    wake: OnceLock::new(),
    started: AtomicBool::new(false),
    start: Mutex::new(()),
};

impl Reaper {
    pub(super) fn adopt(&self, child: Arc<Child>) {
        lock(&self.children).push(child);
        self.kick();
    }

    /// Makes sure the listed children get reaped: wakes the thread, or,
    /// when it can't be started, reaps those that have exited right now.
    fn kick(&self) {
        if !self.started.load(Ordering::Acquire) {
            let _start = lock(&self.start);
            if !self.started.load(Ordering::Acquire) && !self.try_start() {
                // Under `start`: the thread can't begin watching these
                // children while they are removed here.
                lock(&self.children)
                    .retain(|c| matches!(c.try_reap(&mut lock(&c.status)), Ok(None)));
                return;
            }
        }
        self.added.notify_one();
        if let Some((_, w)) = self.wake.get() {
            // Non-blocking: a full pipe already wakes the thread.
            let _ = rustix::io::write(w, &[1]);
        }
    }

    /// Starts the thread (called under `start`); false if it can't be.
    fn try_start(&self) -> bool {
        if self.wake.get().is_none() {
            match nonblocking_pipe() {
                Ok(p) => {
                    let _ = self.wake.set(p);
                }
                Err(_) => return false,
            }
        }
        let started = std::thread::Builder::new()
            .name("multiproc-reaper".into())
            .spawn(|| REAPER.run())
            .is_ok();
        self.started.store(started, Ordering::Release);
        started
    }

    /// At a spawn: another chance for children listed while the thread
    /// could not be started.
    pub(super) fn retry(&self) {
        if !self.started.load(Ordering::Acquire) && !lock(&self.children).is_empty() {
            self.kick();
        }
    }

    fn run(&self) {
        let Some((wake, _)) = self.wake.get() else {
            return; // set before the thread is started
        };
        loop {
            // Our own references, so the pidfds stay open while polled even
            // if another thread drops its `Child` meanwhile.
            let watched: Vec<Arc<Child>> = {
                let mut list = lock(&self.children);
                list.retain(|c| matches!(c.try_reap(&mut lock(&c.status)), Ok(None)));
                while list.is_empty() {
                    list = self.added.wait(list).unwrap_or_else(|e| e.into_inner());
                }
                list.clone()
            };
            let mut polls: Vec<rustix::event::PollFd<'_>> = Vec::with_capacity(watched.len() + 1);
            polls.push(rustix::event::PollFd::new(
                wake,
                rustix::event::PollFlags::IN,
            ));
            for fd in watched.iter().filter_map(|c| c.pidfd.as_ref()) {
                polls.push(rustix::event::PollFd::new(fd, rustix::event::PollFlags::IN));
            }
            // Without a pidfd for every child, look again every 100 ms.
            let all_pidfd = polls.len() == watched.len() + 1;
            let timeout = rustix::event::Timespec {
                tv_sec: 0,
                tv_nsec: 100_000_000,
            };
            let _ = rustix::event::poll(&mut polls, (!all_pidfd).then_some(&timeout));
            if polls[0].revents().contains(rustix::event::PollFlags::IN) {
                let mut buf = [0u8; 64];
                let _ = rustix::io::read(wake, &mut buf);
            }
        }
    }
}
