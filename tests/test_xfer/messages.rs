//! Handles inside messages over a `Connection`: sent to a running child,
//! many at once, forged ones, a lock that stays the same lock.

use super::*;

#[test]
fn a_connection_end_sent_to_a_running_child_is_used_by_it() {
    let _serial = serial();
    let (ctl, theirs) = Pipe::duplex().unwrap();
    let mut p = Process::spawn(serve_received_end, theirs).unwrap();
    let (mine, sent) = Pipe::duplex().unwrap();
    ctl.send(&sent).unwrap();
    drop(sent);
    for x in [21u64, 1 << 40, 7] {
        mine.send(&x).unwrap();
        assert_eq!(mine.recv::<u64>().unwrap(), x * 2);
    }
    mine.send(&0u64).unwrap();
    assert_eq!(ctl.recv::<u64>().unwrap(), 3);
    assert_eq!(p.join().unwrap(), 3);
    // The child's copy is gone with it, ours was dropped: end of file.
    drop(ctl);
    assert!(mine.recv::<u64>().unwrap_err().is_eof());
}

#[test]
fn three_hundred_handles_in_one_message_all_arrive_and_none_leak() {
    let _serial = serial();
    let round = |n: usize| {
        let (ctl, theirs) = Pipe::duplex().unwrap();
        let mut p = Process::spawn(write_into_received, theirs).unwrap();
        let (mut r, w) = std::io::pipe().unwrap();
        let ends: Vec<PassedHandle> = (0..n)
            .map(|_| PassedHandle::new(w.try_clone().unwrap().into()))
            .collect();
        ctl.send(&ends).unwrap();
        drop(ends);
        drop(w);
        assert_eq!(p.join().unwrap(), n);
        drop(p);
        drop(ctl);
        let mut got = Vec::new();
        r.read_to_end(&mut got).unwrap();
        got.sort_unstable();
        let mut want: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
        want.sort_unstable();
        assert_eq!(got, want);
    };
    // A small round first: what a process makes once on first use (under
    // Wine, now and then, one handle) is made before counting.
    round(1);
    let before = census();
    round(300);
    assert_eq!(census(), before);
}

#[test]
fn a_forged_token_is_refused_and_the_handles_that_came_are_closed() {
    let _serial = serial();
    let (a, b) = Pipe::duplex().unwrap();
    // A round first: whatever a process makes once on first use is made
    // (under Wine, now and then, one handle).
    let (_r, w) = std::io::pipe().unwrap();
    a.send(&PassedHandle::new(w.into())).unwrap();
    drop(b.recv::<PassedHandle>().unwrap());
    drop(_r);
    let before = census();
    let (_r, w) = std::io::pipe().unwrap();
    // One handle comes; the message is read as naming two.
    a.send(&(PassedHandle::new(w.into()), 1u64)).unwrap();
    let err = b.recv::<(PassedHandle, PassedHandle)>().unwrap_err();
    assert!(err.is_decode(), "{err}");
    assert!(err.to_string().contains("no passed handle 1"), "{err}");
    drop(_r);
    assert_eq!(census(), before);
    // A token in a message that carried no handles.
    a.send(&0u64).unwrap();
    let err = b.recv::<PassedHandle>().unwrap_err();
    assert!(err.to_string().contains("no handles came"), "{err}");
    // The connection is fine after both.
    a.send(&5u8).unwrap();
    assert_eq!(b.recv::<u8>().unwrap(), 5);
}

#[cfg(unix)]
#[test]
fn a_frame_that_claims_handles_that_did_not_come_poisons_the_end() {
    let _serial = serial();
    let (a, b) = Pipe::duplex().unwrap();
    // A header flagged "handles follow" (bit 62), a block saying one, and
    // nothing on the socket.
    let mut frame = ((8u64) | 1 << 62).to_le_bytes().to_vec();
    frame.extend_from_slice(&1u32.to_le_bytes());
    frame.extend_from_slice(&0u32.to_le_bytes());
    a.send_unframed(&frame).unwrap();
    let err = b.recv::<u8>().unwrap_err();
    assert!(err.is_poisoned(), "{err}");
    assert!(err.to_string().contains("did not come"), "{err}");
    assert!(b.recv::<u8>().unwrap_err().is_poisoned());
}

#[cfg(windows)]
#[test]
fn handle_values_in_a_message_on_a_plain_connection_are_refused() {
    let _serial = serial();
    // A frame flagged "handles follow" (bit 62) whose block names a value:
    // a plain end takes values from no one (only the ends of a channel
    // between a parent and a child it started, such as a pool worker's),
    // so nothing is taken.
    let (a, b) = Pipe::duplex().unwrap();
    let mut body = Vec::new();
    body.extend_from_slice(&1u32.to_le_bytes());
    body.extend_from_slice(&1u32.to_le_bytes());
    body.extend_from_slice(&4u64.to_le_bytes());
    body.push(7);
    let mut frame = (body.len() as u64 | 1 << 62).to_le_bytes().to_vec();
    frame.extend_from_slice(&body);
    a.send_unframed(&frame).unwrap();
    let err = b.recv::<u8>().unwrap_err();
    assert!(
        err.to_string().contains("whose other process is not known"),
        "{err}"
    );
    // The frame was consumed whole: the end goes on.
    a.send(&9u8).unwrap();
    assert_eq!(b.recv::<u8>().unwrap(), 9);
}

/// Receives a `Lock` over `ctl`; tries it while the parent holds it, then
/// again once told the parent let go: (first try, second try).
fn lock_over_ctl(ctl: Connection) -> (bool, bool) {
    let lock: multiproc::Lock = ctl.recv().expect("the lock");
    let while_held = lock.try_acquire().expect("try").is_some();
    ctl.send(&while_held).expect("report");
    let _go: u8 = ctl.recv().expect("go");
    let after = lock.try_acquire().expect("try").is_some();
    (while_held, after)
}

multiproc::entry!(lock_over_ctl);

#[test]
fn a_lock_sent_over_a_connection_to_a_running_child_is_the_same_lock() {
    // The sync types pass their handles through `pass_handle`, so they
    // cross in a message as they do at spawn.
    let _serial = serial();
    let (ctl, theirs) = Pipe::duplex().unwrap();
    let mut p = Process::spawn(lock_over_ctl, theirs).unwrap();
    let lock = multiproc::Lock::new().unwrap();
    let held = lock.acquire().unwrap();
    ctl.send(&lock).unwrap();
    assert!(
        !ctl.recv::<bool>().unwrap(),
        "the child took a lock we hold"
    );
    drop(held);
    ctl.send(&1u8).unwrap();
    assert_eq!(p.join().unwrap(), (false, true));
}
