//! Unit tests of `lane.rs`.
use super::*;
use crate::sys::{shm_create, shm_freeze, ShmPages};
use std::os::windows::io::AsHandle;

/// A queue's lock for `send` (no keeper starts in a unit test: `init`
/// was not called, so blocks stay in holders).
fn lock() -> Guarded {
    Guarded::new(&[0; 8]).unwrap()
}

#[test]
fn a_block_handed_to_the_lane_can_be_opened_until_taken() {
    let lane = SysLane::new().unwrap();
    lane.join().unwrap();
    let b = shm_freeze(shm_create(4096, ShmPages::Base).unwrap()).unwrap();
    let loc = lane.send(b.as_handle(), 1, &lock()).unwrap().unwrap();
    drop(b);
    let copy = lane.open(1, loc).unwrap().expect("there");
    drop(copy);
    assert!(lane.open(1, loc).unwrap().is_some(), "still there");
    assert!(lane.open(2, loc).unwrap().is_none(), "another tag's");
    lane.taken(1, loc);
    assert!(lane.open(1, loc).unwrap().is_none(), "taken");
    lane.leave();
}

#[test]
fn a_sweep_lets_go_of_the_blocks_no_record_names() {
    let lane = SysLane::new().unwrap();
    lane.join().unwrap();
    let b = shm_freeze(shm_create(4096, ShmPages::Base).unwrap()).unwrap();
    let one = lane.send(b.as_handle(), 1, &lock()).unwrap().unwrap();
    let two = lane.send(b.as_handle(), 2, &lock()).unwrap().unwrap();
    assert_eq!(lane.blocks().unwrap(), 2);
    lane.sweep(&[(2, two)]);
    assert_eq!(lane.blocks().unwrap(), 1);
    assert!(lane.open(1, one).unwrap().is_none());
    assert!(lane.open(2, two).unwrap().is_some());
    lane.sweep(&[]);
    assert_eq!(lane.blocks().unwrap(), 0);
    lane.leave();
}

#[test]
fn an_event_is_not_a_lane() {
    let ev = super::super::new_event().unwrap();
    let e = SysLane::from_parts(vec![ev], 0).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
}
