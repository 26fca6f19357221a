//! Unit tests of handle passing.

use std::cell::Cell;

use super::tasks::TAKES_SLOW;
use super::*;

fn parts(socket: bool, write: bool, bulk: bool) -> sys::ChannelParts<u64> {
    sys::ChannelParts {
        main: 10,
        main_is_socket: socket,
        write: write.then_some(11),
        bulk: bulk.then_some(12),
    }
}

#[test]
fn every_kind_round_trips_with_its_handles_in_order() {
    for bits in 0..8u8 {
        let p = parts(bits & 1 != 0, bits & 2 != 0, bits & 4 != 0);
        let kind = kind_of(&p);
        assert_eq!(kind, bits);
        let want = (p.main, p.main_is_socket, p.write, p.bulk);
        let handles = handles_of(p);
        let q = parts_of(kind, handles).unwrap();
        assert_eq!((q.main, q.main_is_socket, q.write, q.bulk), want);
    }
}

#[test]
fn a_pipe_end_with_a_bulk_lane_is_not_taken_for_a_duplex_end() {
    // Two handles: which one is the second is what the tag says.
    let simplex = parts_of(HAS_BULK, vec![1u64, 2]).unwrap();
    assert_eq!((simplex.write, simplex.bulk), (None, Some(2)));
    let duplex = parts_of(HAS_WRITE, vec![1u64, 2]).unwrap();
    assert_eq!((duplex.write, duplex.bulk), (Some(2), None));
}

#[test]
fn unknown_kind_bits_are_refused() {
    assert_eq!(check_kind(8, 1), Err(HandlesError::UnknownKind(8)));
    assert_eq!(
        parts_of(0x80 | HAS_WRITE, vec![1u64, 2]).unwrap_err(),
        HandlesError::UnknownKind(0x82)
    );
}

#[test]
fn a_count_other_than_the_kind_lists_is_refused() {
    assert_eq!(
        check_kind(HAS_WRITE | HAS_BULK, 2),
        Err(HandlesError::Count {
            expected: 3,
            got: 2
        })
    );
    assert_eq!(
        parts_of(0, Vec::<u64>::new()).unwrap_err(),
        HandlesError::Count {
            expected: 1,
            got: 0
        }
    );
    assert!(parts_of(0, vec![1u64, 2]).is_err());
}

#[test]
fn connection_wire_round_trips() {
    let w = ConnectionWire {
        kind: HAS_WRITE | HAS_BULK,
        handles: vec![0, 1, 2],
        readable: true,
        writable: false,
        read_ahead: true,
        max_len: 1 << 20,
        to_parent: false,
    };
    let bytes = postcard::to_allocvec(&w).unwrap();
    assert_eq!(postcard::from_bytes::<ConnectionWire>(&bytes).unwrap(), w);
    assert!(postcard::from_bytes::<ConnectionWire>(&bytes[..bytes.len() - 1]).is_err());
}

/// A fresh fd / handle to pass.
fn a_handle() -> sys::OwnedRaw {
    let (_r, w) = sys::pipe(false).unwrap();
    sys::duplicate(w.as_raw().unwrap()).unwrap()
}

#[test]
fn a_message_collects_copies_and_tokens_are_their_indexes() {
    let (h1, h2) = (a_handle(), a_handle());
    let ((t1, t2), carried) = collecting(|| {
        (
            pass_handle(sys::borrow(&h1)).unwrap(),
            pass_handle(sys::borrow(&h2)).unwrap(),
        )
    });
    assert_eq!((t1, t2, carried.len()), (0, 1, 2));
    // Nothing is left behind on the thread.
    assert!(pass_handle(sys::borrow(&h1)).unwrap_err().is_not_spawning());
    let (none, empty) = collecting(|| 5);
    assert_eq!((none, empty.len()), (5, 0));
}

#[test]
fn a_task_transfer_hands_each_task_its_own_handles_and_looks_only_when_some_came() {
    let (h1, h2, h3) = (a_handle(), a_handle(), a_handle());
    let slow = || TAKES_SLOW.with(Cell::get);
    let opened = hooks::transfers_opened();
    let mut transfer = TaskTransfer::open();
    let before = slow();
    // A thousand tasks without handles: nothing taken, and the transfer
    // itself never looked at.
    for _ in 0..1000 {
        assert!(transfer.take().is_empty());
    }
    assert_eq!(slow(), before);
    // A task with two: tokens 0 and 1, both its own.
    let t = (
        pass_handle(sys::borrow(&h1)).unwrap(),
        pass_handle(sys::borrow(&h2)).unwrap(),
    );
    assert_eq!((t, transfer.take().len()), ((0, 1), 2));
    // The next task's tokens start at 0 again.
    assert_eq!(pass_handle(sys::borrow(&h3)).unwrap(), 0);
    // A message sent from inside the task (its own transfer, with a
    // handle of its own) does not hide the task's handle.
    let (_, inner) = collecting(|| pass_handle(sys::borrow(&h1)).unwrap());
    assert_eq!(inner.len(), 1);
    assert_eq!(transfer.take().len(), 1);
    assert!(transfer.take().is_empty());
    assert_eq!(slow(), before + 2);
    // A handle left untaken (a task that panicked) is closed with the
    // transfer, and the thread has no transfer open again.
    pass_handle(sys::borrow(&h1)).unwrap();
    drop(transfer);
    assert!(pass_handle(sys::borrow(&h1)).unwrap_err().is_not_spawning());
    // One transfer for the run, one for the inner message.
    assert_eq!(hooks::transfers_opened(), opened + 2);
}

#[test]
fn tasks_open_windows_only_in_a_chunk_with_handles() {
    let opened = hooks::windows_opened();
    // Outside a chunk with handles (a chunk without any runs bare, and a
    // message is one window): next_task and task_decoded do nothing.
    for _ in 0..1000 {
        next_task();
        task_decoded();
    }
    receiving_message(Carried::from_received(vec![a_handle()]), || {
        next_task();
        task_decoded();
        assert!(take_passed_handle(0).is_ok(), "a message is one window");
    });
    assert_eq!(hooks::windows_opened(), opened);
    receiving_batch(Carried::from_received(vec![a_handle()]), vec![0, 1], || {
        next_task();
        task_decoded();
        next_task();
        assert!(take_passed_handle(0).is_ok());
        task_decoded();
    });
    assert_eq!(hooks::windows_opened(), opened + 2);
    // The chunk is over: back to nothing.
    next_task();
    assert_eq!(hooks::windows_opened(), opened + 2);
}

#[test]
fn a_message_s_handles_are_taken_once_each_by_token() {
    let carried = Carried::from_received(vec![a_handle(), a_handle()]);
    receiving_message(carried, || {
        assert!(take_passed_handle(1).is_ok());
        assert!(take_passed_handle(1).is_err(), "taken twice");
        assert!(take_passed_handle(2).is_err(), "past the end");
        assert!(take_passed_handle(u64::MAX).is_err());
        assert!(take_passed_handle(0).is_ok());
    });
    // Outside the message, no token names anything.
    assert!(take_passed_handle(0).is_err());
}

#[test]
fn a_pool_task_sees_only_its_own_handles_and_only_while_decoded() {
    let carried = Carried::from_received(vec![a_handle(), a_handle(), a_handle()]);
    // Task 0 has none, task 1 two, task 2 one.
    receiving_batch(carried, vec![0, 2, 1], || {
        next_task();
        assert!(take_passed_handle(0).is_err());
        task_decoded();
        next_task();
        assert!(take_passed_handle(1).is_ok());
        assert!(take_passed_handle(2).is_err(), "task 2's, not task 1's");
        task_decoded();
        // Between tasks: nothing.
        assert!(take_passed_handle(0).is_err());
        next_task();
        assert!(take_passed_handle(0).is_ok());
        task_decoded();
    });
}

#[test]
fn handle_blocks_round_trip_and_refuse_what_is_cut_off_or_over_the_cap() {
    let mut b = Vec::new();
    put_block(&mut b, 3, &[8, 12, 16]);
    b.extend_from_slice(b"rest");
    let (count, values, at) = take_block(&b).unwrap();
    assert_eq!(
        (count, values, &b[at..]),
        (3, vec![8, 12, 16], &b"rest"[..])
    );
    assert_eq!(take_block(&b[..7]), None);
    assert_eq!(take_block(&b[..8 + 8 * 3 - 1]), None);
    let mut over = Vec::new();
    put_block(&mut over, MAX_HANDLES + 1, &[]);
    assert_eq!(take_block(&over), None);
    // As many values as a block may name (Windows: a held block's three
    // more than handles), and one more.
    let values = vec![4u64; sys::MAX_BLOCK_VALUES];
    let mut most = Vec::new();
    put_block(&mut most, MAX_HANDLES, &values);
    assert_eq!(take_block(&most).unwrap().1.len(), sys::MAX_BLOCK_VALUES);
    let mut over = Vec::new();
    put_block(&mut over, 1, &[values.as_slice(), &[4]].concat());
    assert_eq!(take_block(&over), None);
}

#[test]
fn handles_pass_only_while_spawning() {
    let (_r, w) = sys::pipe(false).unwrap();
    let e = duplicate_for_child(w.as_raw().unwrap()).unwrap_err();
    assert!(e.is_not_spawning(), "{e}");
    let e = take_passed_handle(0).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
}

#[test]
fn an_end_marked_as_the_channel_to_the_parent_is_refused_outside_a_spawns_arguments() {
    // A message carrying one end, re-marked as a child's channel to its
    // parent (only a spawn's own arguments may say that).
    let (a, _b) = sys::pipe(true).unwrap();
    let parts = a.pass_handles().unwrap();
    let kind = kind_of(&parts);
    let (bytes, carried) = collecting(|| {
        let handles: Vec<u64> = handles_of(parts)
            .into_iter()
            .map(|h| pass_handle(h).unwrap())
            .collect();
        let w = ConnectionWire {
            kind,
            handles,
            readable: true,
            writable: true,
            read_ahead: false,
            max_len: 1 << 20,
            to_parent: true,
        };
        postcard::to_allocvec(&w).unwrap()
    });
    let e = receiving_message(carried, || {
        crate::encode::from_bytes::<crate::Connection>(&bytes).unwrap_err()
    });
    assert!(e.to_string().contains("marked as a child's channel"), "{e}");
    // In a spawn's arguments (what the parent wrote) it is taken.
    assert!(!in_bootstrap_decode());
    assert!(bootstrap_decode(in_bootstrap_decode));
    assert!(!in_bootstrap_decode());
}
