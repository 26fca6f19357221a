//! Unit tests of the byte ring.

use super::*;

/// The header and data area of a ring of `cap` bytes (the head word,
/// in the atomic prefix, is an `AtomicU64` of each test's).
fn block(cap: usize) -> Vec<u8> {
    vec![0xAA; HEADER + cap]
}

fn pop(r: &mut Ring<'_>) -> Result<Option<Vec<u8>>, Corrupt> {
    let mut out = vec![1, 2, 3];
    match r.pop(&mut out)? {
        Pop::Done => Ok(Some(out)),
        Pop::Large(r) => panic!("a large record: {r:?}"),
        Pop::Empty | Pop::Closed => Ok(None),
    }
}

#[test]
fn items_come_out_in_order_and_whole() {
    let head = AtomicU64::new(0);
    let mut mem = block(256);
    let mut r = Ring::init(&head, &mut mem, u64::MAX);
    for i in 0..5u8 {
        assert_eq!(r.push(&vec![i; i as usize * 3]), Ok(Push::Done));
    }
    assert_eq!(r.len(), 5);
    for i in 0..5u8 {
        assert_eq!(pop(&mut r).unwrap(), Some(vec![i; i as usize * 3]));
    }
    assert_eq!(r.len(), 0);
    assert_eq!(r.pop(&mut Vec::new()), Ok(Pop::Empty));
}

#[test]
fn records_wrap_around_the_end_many_times() {
    let head = AtomicU64::new(0);
    let mut mem = block(64);
    let mut r = Ring::init(&head, &mut mem, u64::MAX);
    // 13-byte payloads take 24 bytes: they straddle the end in turn.
    for round in 0..1000u32 {
        let item: Vec<u8> = (0..13).map(|k| (round as u8).wrapping_add(k)).collect();
        assert_eq!(r.push(&item), Ok(Push::Done), "round {round}");
        assert_eq!(r.push(&item[..5]), Ok(Push::Done));
        assert_eq!(pop(&mut r).unwrap(), Some(item.clone()));
        assert_eq!(pop(&mut r).unwrap(), Some(item[..5].to_vec()));
    }
}

#[test]
fn full_by_bytes_and_by_items() {
    let head = AtomicU64::new(0);
    let mut mem = block(64);
    let mut r = Ring::init(&head, &mut mem, u64::MAX);
    // 64 bytes hold exactly four 8-byte payloads (16 bytes each).
    for _ in 0..4 {
        assert_eq!(r.push(&[7; 8]), Ok(Push::Done));
    }
    assert_eq!(r.used_bytes(), 64);
    assert_eq!(r.push(&[]), Ok(Push::Full));
    assert_eq!(pop(&mut r).unwrap(), Some(vec![7; 8]));
    assert_eq!(r.push(&[1; 9]), Ok(Push::Full), "9 bytes take 24");
    assert_eq!(r.push(&[1; 8]), Ok(Push::Done));

    let mut mem = block(256);
    let mut r = Ring::init(&head, &mut mem, 2);
    assert_eq!(r.push(b"a"), Ok(Push::Done));
    assert_eq!(r.push(b"b"), Ok(Push::Done));
    assert_eq!(r.push(b"c"), Ok(Push::Full));
}

#[test]
fn an_item_larger_than_the_ring_is_too_large_not_full() {
    let head = AtomicU64::new(0);
    let mut mem = block(64);
    let mut r = Ring::init(&head, &mut mem, u64::MAX);
    assert_eq!(r.max_item_len(), 56);
    assert_eq!(r.push(&[0; 57]), Ok(Push::TooLarge));
    assert_eq!(r.push(&[9; 56]), Ok(Push::Done), "exactly the data area");
    assert_eq!(pop(&mut r).unwrap(), Some(vec![9; 56]));
}

#[test]
fn closed_refuses_puts_and_drains_before_saying_closed() {
    let head = AtomicU64::new(0);
    let mut mem = block(64);
    let mut r = Ring::init(&head, &mut mem, u64::MAX);
    r.push(b"last").unwrap();
    r.close();
    assert_eq!(r.push(b"more"), Ok(Push::Closed));
    assert_eq!(pop(&mut r).unwrap(), Some(b"last".to_vec()));
    assert_eq!(r.pop(&mut Vec::new()), Ok(Pop::Closed));
}

#[test]
fn a_push_cut_off_before_its_commit_leaves_nothing() {
    let head = AtomicU64::new(0);
    let mut mem = block(64);
    let before = {
        let mut r = Ring::init(&head, &mut mem, u64::MAX);
        r.push(b"kept").unwrap();
        mem.clone()
    };
    // A producer that died while writing: record bytes past the tail,
    // tail word untouched.
    let mut mem = before.clone();
    mem[HEADER + 16..HEADER + 40].fill(0x5A);
    let mut r = Ring::open(&head, &mut mem).unwrap();
    assert_eq!(r.len(), 1);
    assert_eq!(pop(&mut r).unwrap(), Some(b"kept".to_vec()));
    assert_eq!(pop(&mut r).unwrap(), None);
}

#[test]
fn a_pop_cut_off_before_its_commit_leaves_the_item() {
    let head = AtomicU64::new(0);
    let mut mem = block(64);
    let mut r = Ring::init(&head, &mut mem, u64::MAX);
    r.push(b"one").unwrap();
    // A consumer that copied the record out and died: the head word
    // is what counts, and it did not move.
    let mut copy = vec![0; 3];
    r.read_at(FRAME, &mut copy);
    assert_eq!(copy, b"one");
    let mut r = Ring::open(&head, &mut mem).unwrap();
    assert_eq!(pop(&mut r).unwrap(), Some(b"one".to_vec()));
}

#[test]
fn a_forged_frame_is_an_error_and_the_ring_stays_usable() {
    let head = AtomicU64::new(0);
    let mut mem = block(64);
    let mut r = Ring::init(&head, &mut mem, u64::MAX);
    r.push(b"abc").unwrap();
    put_u32(&mut mem, HEADER, 1_000_000); // length, complement left wrong
    let mut r = Ring::open(&head, &mut mem).unwrap();
    let e = pop(&mut r).unwrap_err();
    assert!(e.0.contains("1000000"), "{e}");
    assert_eq!(r.len(), 0);
    assert_eq!(r.push(b"after"), Ok(Push::Done));
    assert_eq!(pop(&mut r).unwrap(), Some(b"after".to_vec()));
}

#[test]
fn a_forged_frame_with_a_good_check_but_too_long_is_refused() {
    let head = AtomicU64::new(0);
    let mut mem = block(64);
    let mut r = Ring::init(&head, &mut mem, u64::MAX);
    r.push(b"abc").unwrap();
    put_u32(&mut mem, HEADER, 40);
    put_u32(&mut mem, HEADER + 4, !40);
    let mut r = Ring::open(&head, &mut mem).unwrap();
    assert!(pop(&mut r).is_err(), "40 bytes claimed, 16 in use");
}

#[test]
fn forged_header_words_are_refused() {
    let head = AtomicU64::new(0);
    let mut mem = block(64);
    Ring::init(&head, &mut mem, u64::MAX);
    let fresh = mem.clone();
    // Each forgery: a tail word that can't be.
    let forgeries = [
        End { items: 0, pos: 8 },   // bytes but no items
        End { items: 9, pos: 16 },  // 9 items in 16 bytes
        End { items: 1, pos: 12 },  // misaligned
        End { items: 1, pos: 640 }, // outside
    ];
    for f in forgeries {
        let mut mem = fresh.clone();
        put_u64(&mut mem, TAIL_AT, f.word());
        // The view opens (the block is a ring), its operations refuse,
        // and a pop empties it so that it works again.
        let mut r = Ring::open(&head, &mut mem).expect("a ring's header");
        let e = r.push(b"x").expect_err("refused");
        assert!(e.0.contains("tail"), "{e}");
        assert_eq!(r.len(), 0);
        let e = pop(&mut r).expect_err("refused");
        assert!(e.0.contains("tail"), "{e}");
        assert_eq!(r.push(b"y"), Ok(Push::Done));
        assert_eq!(pop(&mut r).unwrap(), Some(b"y".to_vec()));
    }
    let mut mem = fresh.clone();
    put_u32(&mut mem, MAGIC_AT, 0);
    assert!(Ring::open(&head, &mut mem).is_err());
    let mut mem = fresh.clone();
    put_u64(&mut mem, CAP_AT, 128);
    assert!(
        Ring::open(&head, &mut mem).is_err(),
        "the header's cap is not the block's"
    );
    let mut short = fresh[..HEADER + 8].to_vec();
    assert!(Ring::open(&head, &mut short).is_err());
}

#[test]
fn a_forged_tail_in_a_live_ring_is_an_error_then_usable() {
    let head = AtomicU64::new(0);
    let mut mem = block(64);
    let mut r = Ring::init(&head, &mut mem, u64::MAX);
    r.push(b"x").unwrap();
    put_u64(r.mem, TAIL_AT, End { items: 7, pos: 8 }.word());
    r.ends = r.read_ends().ok(); // as a new view (a new lock holding) would see it
    assert!(r.push(b"y").is_err());
    assert!(pop(&mut r).is_err());
    assert_eq!(r.len(), 0);
    assert_eq!(r.push(b"z"), Ok(Push::Done));
    assert_eq!(pop(&mut r).unwrap(), Some(b"z".to_vec()));
}

#[test]
fn full_to_the_byte_is_told_from_empty() {
    let head = AtomicU64::new(0);
    let mut mem = block(32);
    let mut r = Ring::init(&head, &mut mem, u64::MAX);
    assert_eq!(r.push(&[3; 24]), Ok(Push::Done));
    assert_eq!(r.used_bytes(), 32);
    assert_eq!(r.len(), 1);
    assert_eq!(r.push(&[]), Ok(Push::Full));
    assert_eq!(pop(&mut r).unwrap(), Some(vec![3; 24]));
    assert_eq!(r.used_bytes(), 0);
}

#[test]
fn unfinished_counts_puts_until_each_is_marked_done() {
    let head = AtomicU64::new(0);
    let mut mem = block(64);
    let mut r = Ring::init(&head, &mut mem, u64::MAX);
    assert!(!r.task_done(), "nothing put yet");
    r.push(b"a").unwrap();
    r.push(b"b").unwrap();
    pop(&mut r).unwrap();
    pop(&mut r).unwrap();
    assert_eq!(r.unfinished(), 2, "taken is not done");
    assert!(r.task_done());
    assert_eq!(r.unfinished(), 1);
    assert!(r.task_done());
    assert_eq!(r.unfinished(), 0);
    assert!(!r.task_done(), "more done than put");
    assert_eq!(r.unfinished(), 0);
}

#[test]
fn the_fuzz_entry_survives_random_blocks_and_reads_real_ones() {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for len in [0, 7, 64, 80, 81, 200, 1000] {
        for _ in 0..200 {
            let block: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let _ = fuzz(&block, false);
            let _ = fuzz(&block, true);
        }
    }
    let head = AtomicU64::new(0);
    let mut mem = block(128);
    let mut r = Ring::init(&head, &mut mem, u64::MAX);
    for i in 0..5u8 {
        r.push(&[i; 9]).unwrap();
    }
    let mut with_head = head.load(Ordering::SeqCst).to_le_bytes().to_vec();
    with_head.extend_from_slice(&mem);
    assert_eq!(fuzz(&with_head, false), Ok(5));
}

#[test]
fn the_sleeper_counts_add_up() {
    let head = AtomicU64::new(0);
    let mut mem = block(32);
    let mut r = Ring::init(&head, &mut mem, u64::MAX);
    r.add_get_sleepers(1);
    r.add_get_sleepers(1);
    r.add_put_sleepers(1);
    r.add_get_sleepers(-1);
    assert_eq!((r.get_sleepers(), r.put_sleepers()), (1, 1));
    r.add_put_sleepers(-1);
    r.add_put_sleepers(-1);
    assert_eq!(r.put_sleepers(), 0, "never below zero");
}

#[test]
fn a_peeked_record_stays_until_taken_and_a_prepared_one_is_absent_until_committed() {
    let head = AtomicU64::new(0);
    let mut mem = block(64);
    let mut r = Ring::init(&head, &mut mem, u64::MAX);
    // Prepared, not committed: nothing is in, and the next put reuses
    // the bytes.
    assert!(matches!(r.prepare(b"lost"), Ok(Prepared::Ready(_))));
    assert_eq!((r.len(), r.used_bytes()), (0, 0));
    assert_eq!(r.push(b"one"), Ok(Push::Done));
    assert_eq!(r.push(b"two"), Ok(Push::Done));
    // Peeked twice (a consumer killed before taking, then the next one):
    // the same oldest item, still counted.
    let mut out = Vec::new();
    for _ in 0..2 {
        let Ok(Peeked::Item(..)) = r.peek(&mut out) else {
            panic!("an item")
        };
        assert_eq!((out.as_slice(), r.len()), (&b"one"[..], 2));
    }
    let Ok(Peeked::Item(t, ())) = r.peek(&mut out) else {
        panic!("an item")
    };
    r.take(t);
    assert_eq!(r.len(), 1);
    assert_eq!(pop(&mut r).unwrap(), Some(b"two".to_vec()));
    assert_eq!(r.peek(&mut out), Ok(Peeked::Empty));
}

#[test]
fn large_records_come_out_in_their_place_and_are_counted_by_large_bytes() {
    let head = AtomicU64::new(0);
    let mut mem = block(256);
    let mut r = Ring::init(&head, &mut mem, u64::MAX);
    let big = LargeRef {
        tag: 0x1234_5678_9abc_def0,
        len: 16 << 20,
        loc: 77,
    };
    assert_eq!(r.push(b"before"), Ok(Push::Done));
    for item in [big, LargeRef { len: 5, ..big }] {
        let Ok(Prepared::Ready(p)) = r.prepare_large(item) else {
            panic!("room")
        };
        r.commit(p);
    }
    assert_eq!(r.push(b"after"), Ok(Push::Done));
    assert_eq!(r.len(), 4);
    assert_eq!(r.large_bytes(), Ok((16 << 20) + 5));
    assert_eq!(pop(&mut r).unwrap(), Some(b"before".to_vec()));
    let mut out = Vec::new();
    // Peeked without taking: it stays, first in line.
    for _ in 0..2 {
        assert!(matches!(r.peek(&mut out), Ok(Peeked::Large(_, got)) if got == big));
    }
    assert_eq!(r.pop(&mut out), Ok(Pop::Large(big)));
    assert_eq!(r.large_bytes(), Ok(5));
    assert_eq!(r.pop(&mut out), Ok(Pop::Large(LargeRef { len: 5, ..big })));
    assert_eq!(r.large_bytes(), Ok(0));
    assert_eq!(pop(&mut r).unwrap(), Some(b"after".to_vec()));
}

#[test]
fn a_large_mark_on_a_frame_of_the_wrong_length_or_a_bad_ref_is_corrupt() {
    let head = AtomicU64::new(0);
    let mut mem = block(256);
    let mut r = Ring::init(&head, &mut mem, u64::MAX);
    // A frame marked large whose payload is 3 bytes.
    assert_eq!(r.push(b"abc"), Ok(Push::Done));
    r.scribble_over_oldest(&[3, 0, 0, 0]);
    let mut check = [0u8; 4];
    check.copy_from_slice(&(!3u32 ^ LARGE_MARK).to_le_bytes());
    let mut frame = vec![3, 0, 0, 0];
    frame.extend_from_slice(&check);
    r.scribble_over_oldest(&frame);
    assert!(r.large_bytes().is_err());
    assert!(r.pop(&mut Vec::new()).is_err());
    assert_eq!(r.len(), 0, "emptied");
    // A frame marked large of the right length whose payload is not a
    // LargeRef (no magic).
    assert_eq!(r.push(&[0u8; LARGE_REF_LEN]), Ok(Push::Done));
    let mut frame = (LARGE_REF_LEN as u32).to_le_bytes().to_vec();
    frame.extend_from_slice(&(!(LARGE_REF_LEN as u32) ^ LARGE_MARK).to_le_bytes());
    r.scribble_over_oldest(&frame);
    assert!(r.pop(&mut Vec::new()).is_err());
}

#[test]
fn records_copied_out_are_taken_without_the_lock_in_order_and_once() {
    let head = AtomicU64::new(0);
    let mut mem = block(256);
    let mut r = Ring::init(&head, &mut mem, u64::MAX);
    for i in 1..=4u8 {
        r.push(&[i; 3]).unwrap();
    }
    r.push(&[9; 100]).unwrap();
    let Ok(Peeked::Item(first, ())) = r.peek_with(|p| assert_eq!(p, [1; 3])) else {
        panic!("an item");
    };
    assert!(r.take(first));
    // Copied out after it: 2, 3 and 4; the 100-byte one is longer than
    // asked for, so the copies stop there.
    let mut copies = Vec::new();
    let mut prev = first;
    while let Some((t, p)) = r.peek_next(&prev, 64, |p| p.to_vec()) {
        copies.push((p, t.head_word()));
        prev = t;
    }
    assert_eq!(
        copies.iter().map(|c| c.0.clone()).collect::<Vec<_>>(),
        [[2; 3], [3; 3], [4; 3]]
    );
    assert_eq!(r.len(), 4, "copied records are still in the ring");
    // Taken in order: each take expects the word the one before left.
    assert!(
        !take_unlocked(&head, copies[0].1, copies[1].1),
        "3 before 2"
    );
    assert!(take_unlocked(&head, first.head_word(), copies[0].1));
    assert!(
        !take_unlocked(&head, first.head_word(), copies[0].1),
        "2 twice"
    );
    // A view opened now sees 2 gone; its take of 3 beats the copy's.
    let mut r = Ring::open(&head, &mut mem).unwrap();
    assert_eq!(pop(&mut r).unwrap(), Some(vec![3; 3]));
    assert!(
        !take_unlocked(&head, copies[0].1, copies[1].1),
        "3 was taken"
    );
    assert!(take_unlocked(&head, copies[1].1, copies[2].1), "4 was not");
    let mut r = Ring::open(&head, &mut mem).unwrap();
    assert_eq!(pop(&mut r).unwrap(), Some(vec![9; 100]));
    assert_eq!(r.len(), 0);
}

#[test]
fn a_take_without_the_lock_fails_while_a_producer_sleeps_for_room_and_a_locked_take_after_one_fails(
) {
    let head = AtomicU64::new(0);
    let mut mem = block(64);
    let mut r = Ring::init(&head, &mut mem, u64::MAX);
    for i in 1..=3u8 {
        r.push(&[i; 8]).unwrap();
    }
    let Ok(Peeked::Item(first, ())) = r.peek_with(|_| ()) else {
        panic!("an item");
    };
    assert!(r.take(first));
    let (second, ()) = r.peek_next(&first, 64, |_| ()).unwrap();
    // A producer counted asleep for room sets the flag: no take without
    // the lock until it is counted off again.
    assert!(!r.add_put_sleepers(1), "the head did not move");
    assert_eq!(head.load(Ordering::SeqCst) & ROOM_WAIT, ROOM_WAIT);
    assert!(!take_unlocked(&head, first.head_word(), second.head_word()));
    assert!(!r.add_put_sleepers(-1));
    assert_eq!(head.load(Ordering::SeqCst) & ROOM_WAIT, 0);
    // A view that read the head before a take without the lock: its own
    // take fails, and a producer in it counting itself asleep learns
    // that the head moved (and looks again instead).
    let mut r = Ring::open(&head, &mut mem).unwrap();
    let Ok(Peeked::Item(t, ())) = r.peek_with(|p| assert_eq!(p, [2; 8])) else {
        panic!("an item");
    };
    assert!(take_unlocked(&head, first.head_word(), second.head_word()));
    assert!(!r.take(t), "2 was taken without the lock");
    let mut r = Ring::open(&head, &mut mem).unwrap();
    let head_before = head.load(Ordering::SeqCst);
    let Ok(Peeked::Item(third, ())) = r.peek_with(|p| assert_eq!(p, [3; 8])) else {
        panic!("an item");
    };
    assert!(take_unlocked(&head, head_before, third.head_word()));
    assert!(r.add_put_sleepers(1), "the head moved");
    assert_eq!(r.len(), 0, "the view was read again");
    assert!(!r.add_put_sleepers(-1));
}
