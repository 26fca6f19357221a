//! The one thread that watches workers for async joins: it waits on
//! every registered worker's exit (pidfd / process handle) and reply
//! channel at once, and wakes the future that registered each when it
//! becomes ready. No thread per process or per future; the thread starts
//! with the first registration and then stays.
//!
//! A registration is one-shot: once its worker is ready the waker is
//! woken and the registration dropped; a future that is still pending
//! after its next poll registers again. It holds its own copy of the
//! channel's handle and its own reference to the process handle, so the
//! thread never waits on a handle that was closed meanwhile.
//!
//! Where the OS gives no exit handle (macOS, Linux before 5.3) the thread
//! also wakes every such registration every [`TICK`], and its future
//! checks again.
//!
//! Windows: `sys::wait_any` waits on more than 63 objects with helper
//! threads, one per 63, for the duration of one wait.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::Waker;
use std::time::Duration;

use super::ExitWatch;
use crate::sys;

/// How often registrations without an exit handle are woken.
const TICK: Duration = Duration::from_millis(100);

/// One future's registration, shared between it and the thread.
#[derive(Debug)]
pub(crate) struct Watch {
    waker: Mutex<Option<Waker>>,
    /// The thread woke the waker and dropped the registration.
    fired: AtomicBool,
    /// The future was dropped: the thread drops the registration.
    cancelled: AtomicBool,
}

impl Watch {
    fn waker(&self) -> MutexGuard<'_, Option<Waker>> {
        self.waker.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the registration still waits (and can take a new waker
    /// instead of registering again).
    pub(crate) fn is_pending(&self) -> bool {
        !self.fired.load(Ordering::Acquire)
    }

    /// The waker to wake (a later poll may come with another).
    pub(crate) fn set_waker(&self, waker: &Waker) {
        let mut w = self.waker();
        match &mut *w {
            Some(old) if old.will_wake(waker) => {}
            slot => *slot = Some(waker.clone()),
        }
    }

    /// The future is gone: the thread lets go of the handles.
    pub(crate) fn cancel(&self) {
        if self.is_pending() {
            self.cancelled.store(true, Ordering::Release);
            if let Some(w) = WAITER.get() {
                w.kick();
            }
        }
    }

    fn fire(&self) {
        self.fired.store(true, Ordering::Release);
        let waker = self.waker().take();
        if let Some(w) = waker {
            w.wake();
        }
    }
}

struct Registration {
    watch: Arc<Watch>,
    /// A copy of the reply channel's handle, while the reply is not in.
    channel: Option<sys::OwnedRaw>,
    exit: ExitWatch,
}

struct Waiter {
    new: Mutex<Vec<Registration>>,
    /// The thread's own end, readable when `kick`ed.
    wake_r: sys::Channel,
    wake_w: sys::Channel,
    /// A byte is (about to be) in the wake pipe.
    kicked: AtomicBool,
}

static WAITER: OnceLock<Waiter> = OnceLock::new();
/// The thread runs (set once, under `START`).
static STARTED: AtomicBool = AtomicBool::new(false);
static START: Mutex<()> = Mutex::new(());

impl Waiter {
    fn kick(&self) {
        if !self.kicked.swap(true, Ordering::AcqRel) && self.wake_w.write(&[1]).is_err() {
            // No byte went: the next kick tries again.
            self.kicked.store(false, Ordering::Release);
        }
    }

    fn run(&self) {
        let mut watched: Vec<Registration> = Vec::new();
        loop {
            // Drained first, the flag cleared after: a kick whose byte the
            // drain took had pushed its registration before, so the take
            // below finds it; a kick after the clear writes a byte that
            // the wait below sees. (Cleared first, a kick between the
            // clear and the drain would leave the flag set with no byte
            // in the pipe, and every later kick skipped: seen under Wine.)
            let mut buf = [0u8; 16];
            let _ = self
                .wake_r
                .read_timeout(None, &mut buf, Some(Duration::ZERO));
            self.kicked.store(false, Ordering::Release);
            watched.append(&mut self.new.lock().unwrap_or_else(|e| e.into_inner()));
            watched.retain(|r| !r.watch.cancelled.load(Ordering::Acquire));
            // The wake pipe, then per registration its exit and channel.
            let mut objs = Vec::new();
            let mut owner = Vec::new();
            // (A pipe always has a handle to wait on; without one, the
            // tick stands in for it.)
            let mut ticking = match self.wake_r.as_raw() {
                Some(h) => {
                    objs.push(h);
                    owner.push(usize::MAX);
                    false
                }
                None => true,
            };
            for (i, r) in watched.iter().enumerate() {
                match r.exit.handle() {
                    Some(h) => {
                        objs.push(h);
                        owner.push(i);
                    }
                    None => ticking = true,
                }
                if let Some(c) = &r.channel {
                    objs.push(sys::borrow(c));
                    owner.push(i);
                }
            }
            let ready = match sys::wait_any(&objs, ticking.then_some(TICK)) {
                Ok(ready) => ready,
                // Nothing to wait on can fail only for an OS error: wake
                // everyone, whose polls will find out for themselves.
                Err(_) => (0..objs.len()).collect(),
            };
            let mut fire = vec![false; watched.len()];
            for i in ready {
                if let Some(&k) = owner.get(i).filter(|&&k| k != usize::MAX) {
                    fire[k] = true;
                }
            }
            if ticking {
                for (k, r) in watched.iter().enumerate() {
                    if r.exit.handle().is_none() {
                        fire[k] = true;
                    }
                }
            }
            drop(objs);
            let mut k = 0;
            watched.retain(|r| {
                let keep = !fire[k];
                k += 1;
                if !keep {
                    r.watch.fire();
                }
                keep
            });
        }
    }
}

/// The thread, started on first use (tried again at the next use if it
/// could not be).
fn waiter() -> std::io::Result<&'static Waiter> {
    if !STARTED.load(Ordering::Acquire) {
        let _start = START.lock().unwrap_or_else(|e| e.into_inner());
        if !STARTED.load(Ordering::Acquire) {
            if WAITER.get().is_none() {
                let (wake_r, wake_w) = sys::pipe(false)?;
                let _ = WAITER.set(Waiter {
                    new: Mutex::new(Vec::new()),
                    wake_r,
                    wake_w,
                    kicked: AtomicBool::new(false),
                });
            }
            std::thread::Builder::new()
                .name("multiproc-join-waiter".into())
                .spawn(|| {
                    if let Some(w) = WAITER.get() {
                        w.run();
                    }
                })?;
            STARTED.store(true, Ordering::Release);
        }
    }
    WAITER
        .get()
        .ok_or_else(|| std::io::Error::other("the join waiter did not start"))
}

/// Has `waker` woken once `exit` signals that its process exited or
/// `channel` (if given) is readable.
pub(crate) fn register(
    channel: Option<sys::BorrowedRaw<'_>>,
    exit: ExitWatch,
    waker: &Waker,
) -> std::io::Result<Arc<Watch>> {
    let w = waiter()?;
    let channel = channel.map(sys::duplicate).transpose()?;
    let watch = Arc::new(Watch {
        waker: Mutex::new(Some(waker.clone())),
        fired: AtomicBool::new(false),
        cancelled: AtomicBool::new(false),
    });
    w.new
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(Registration {
            watch: Arc::clone(&watch),
            channel,
            exit,
        });
    w.kick();
    Ok(watch)
}
