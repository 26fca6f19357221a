//! Daemonic workers: terminated when this process exits normally.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::sys;

/// Daemonic children, kept until they exit or this process does.
static DAEMONS: Mutex<Vec<Arc<sys::Child>>> = Mutex::new(Vec::new());

pub(super) fn register_daemon(child: &Arc<sys::Child>) {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let _ = sys::at_exit(terminate_daemons);
    });
    let mut list = DAEMONS.lock().unwrap_or_else(|e| e.into_inner());
    list.retain(|c| matches!(c.wait(Some(Duration::ZERO)), Ok(None)));
    list.push(Arc::clone(child));
}

/// At exit, as Python's `_exit_function`: terminate daemonic children, then
/// reap them (killing any that ignore SIGTERM for a second).
extern "C" fn terminate_daemons() {
    let list: Vec<Arc<sys::Child>> = match DAEMONS.try_lock() {
        Ok(mut l) => std::mem::take(&mut *l),
        Err(_) => return,
    };
    for c in &list {
        let _ = c.terminate();
    }
    for c in &list {
        if !matches!(c.wait(Some(Duration::from_secs(1))), Ok(Some(_))) {
            let _ = c.kill();
            let _ = c.wait(Some(Duration::from_secs(1)));
        }
    }
}
