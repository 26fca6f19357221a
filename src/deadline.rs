//! Deadlines from timeouts. Any `Duration` is a valid timeout: one too
//! long for an `Instant` (`Duration::MAX`, say) means no deadline at all,
//! the same as waiting forever.

use std::time::{Duration, Instant};

/// The instant `timeout` from now; `None` (no deadline) when that is past
/// what an `Instant` can hold.
pub(crate) fn deadline(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}

/// [`deadline`] for an optional timeout; `None` (forever) stays `None`.
pub(crate) fn deadline_of(timeout: Option<Duration>) -> Option<Instant> {
    timeout.and_then(deadline)
}

/// The time left until `deadline`, zero once it passed; `None` without one.
pub(crate) fn left(deadline: Option<Instant>) -> Option<Duration> {
    deadline.map(|d| d.saturating_duration_since(Instant::now()))
}

/// Whether `deadline` has passed (never, without one).
pub(crate) fn passed(deadline: Option<Instant>) -> bool {
    deadline.is_some_and(|d| Instant::now() >= d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timeout_too_long_for_an_instant_is_no_deadline() {
        assert_eq!(deadline(Duration::MAX), None);
        assert_eq!(deadline_of(Some(Duration::MAX)), None);
        assert_eq!(deadline_of(None), None);
        assert!(!passed(None));
        assert_eq!(left(None), None);
    }

    #[test]
    fn an_ordinary_timeout_is_a_deadline() {
        let d = deadline(Duration::from_secs(3600)).unwrap();
        assert!(!passed(Some(d)));
        assert!(left(Some(d)).unwrap() > Duration::from_secs(3500));
        let past = deadline(Duration::ZERO);
        assert!(passed(past));
        assert_eq!(left(past), Some(Duration::ZERO));
    }
}
