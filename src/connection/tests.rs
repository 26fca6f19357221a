//! Unit tests of the framing (Unix).

use super::*;

/// A frame flagged as carrying handles, with a block saying `count`.
fn handle_frame(count: u32, payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    handles::put_block(&mut body, count as usize, &[]);
    body.extend_from_slice(payload);
    let mut frame = (body.len() as u64 | HANDLES_FLAG).to_le_bytes().to_vec();
    frame.extend_from_slice(&body);
    frame
}

#[test]
fn a_block_that_miscounts_the_handles_that_came_is_refused_and_the_end_goes_on() {
    let (a, b) = Pipe::duplex().unwrap();
    let (r, _w) = std::io::pipe().unwrap();
    let fd = std::os::fd::AsFd::as_fd(&r);
    // One fd comes; the frame's block says two.
    a.chan.send_handles(&[fd], sys::Peer::Unknown).unwrap();
    a.write_frame(&handle_frame(2, &[7]), &[]).unwrap();
    let e = b.recv::<u8>().unwrap_err();
    assert!(e.to_string().contains("says it carries 2 handles"), "{e}");
    assert!(!e.is_poisoned(), "{e}");
    // The record and the frame were both consumed: the next message
    // is read as it should be.
    a.send(&9u8).unwrap();
    assert_eq!(b.recv::<u8>().unwrap(), 9);
}

#[test]
fn a_malformed_block_poisons_the_end() {
    let (a, b) = Pipe::duplex().unwrap();
    let (r, _w) = std::io::pipe().unwrap();
    let fd = std::os::fd::AsFd::as_fd(&r);
    a.chan.send_handles(&[fd], sys::Peer::Unknown).unwrap();
    // A body of 3 bytes: too short for a block.
    let mut frame = (3u64 | HANDLES_FLAG).to_le_bytes().to_vec();
    frame.extend_from_slice(&[1, 0, 0]);
    a.write_frame(&frame, &[]).unwrap();
    assert!(b.recv::<u8>().unwrap_err().is_poisoned());
}

#[test]
fn big_messages_with_handles_take_the_bulk_lane_after_their_handles() {
    let (a, b) = Pipe::duplex().unwrap();
    let (_r, w) = std::io::pipe().unwrap();
    let big = vec![5u8; BULK_MIN * 2];
    let msg = (crate::PassedHandle::new(w.into()), big.clone());
    // The body is bigger than a socket buffer: send from a thread.
    let sender = std::thread::spawn(move || {
        a.send(&msg).unwrap();
        a
    });
    let (h, got): (crate::PassedHandle, Vec<u8>) = b.recv().unwrap();
    let a = sender.join().unwrap();
    assert_eq!(got, big);
    drop(h);
    a.send(&1u8).unwrap();
    assert_eq!(b.recv::<u8>().unwrap(), 1);
}

#[test]
fn handles_sent_only_in_part_poison_the_sending_side() {
    let (a, b) = Pipe::duplex().unwrap();
    let (_r, w) = std::io::pipe().unwrap();
    // As after a record cut short on the bulk lane (a later batch refused).
    a.chan.set_handles_out_of_step();
    let e = a.send(&crate::PassedHandle::new(w.into())).unwrap_err();
    assert!(e.is_poisoned(), "{e}");
    assert!(e.to_string().contains("sent only in part"), "{e}");
    // Every later send fails the same way, with or without handles, big
    // or small: the stream can't be resynchronized.
    assert!(a.send(&1u8).unwrap_err().is_poisoned());
    assert!(a
        .send_bytes(&vec![0u8; BULK_MIN])
        .unwrap_err()
        .is_poisoned());
    // Nothing reached the receiver.
    assert!(!b.poll(Some(std::time::Duration::ZERO)).unwrap());
}
