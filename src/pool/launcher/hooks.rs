//! Test hooks (feature `test-hooks`): widen the moment between a launch's
//! command starting and its wait beginning, to check that a worker which
//! connects back in that moment is not lost.

use std::collections::BTreeSet;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

struct State {
    /// The launch whose wait is held back.
    held: Option<u64>,
    /// The tokens of the hellos read so far.
    read: BTreeSet<u64>,
}

static STATE: Mutex<State> = Mutex::new(State {
    held: None,
    read: BTreeSet::new(),
});
static CHANGED: Condvar = Condvar::new();

fn state() -> std::sync::MutexGuard<'static, State> {
    STATE.lock().unwrap_or_else(|e| e.into_inner())
}

/// From now on in this process, the wait of the launch of `token`
/// begins only once its worker's hello was read (by another launch's
/// wait), or after 60 s.
pub(crate) fn hold_wait_until_hello(token: u64) {
    state().held = Some(token);
}

/// Whether a hello of `token` was read.
pub(crate) fn hello_was_read(token: u64) -> bool {
    state().read.contains(&token)
}

pub(super) fn hello_read(token: u64) {
    state().read.insert(token);
    CHANGED.notify_all();
}

/// How many times a launch's wait saw its command exited.
static EXITS_SEEN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

pub(super) fn saw_exit() {
    EXITS_SEEN.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
}

/// How many times a launch's wait saw its command exited, in this
/// process.
pub(crate) fn exits_seen() -> usize {
    EXITS_SEEN.load(std::sync::atomic::Ordering::SeqCst)
}

pub(super) fn before_wait(token: u64) {
    let st = state();
    if st.held != Some(token) {
        return;
    }
    let _ = CHANGED.wait_timeout_while(st, Duration::from_secs(60), |s| !s.read.contains(&token));
}
