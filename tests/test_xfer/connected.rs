//! Handles both ways over a `spawn_connected` channel.

use super::*;

/// Over its channel to the parent (`spawn_connected`): receives a pipe's
/// writing end and a frozen block, writes the block's sum into the pipe;
/// then sends back the reading end of a pipe holding "from the child" and
/// a block of ten 7s. Returns the sum.
fn swap_handles((conn, ()): (Connection, ())) -> u64 {
    let (w, block): (PassedHandle, multiproc::Frozen<u64>) = conn.recv().expect("from parent");
    let sum: u64 = block.iter().sum();
    let mut w = std::io::PipeWriter::from(w.into_inner());
    w.write_all(&sum.to_le_bytes()).expect("write");
    drop(w);
    let (r, mut w) = std::io::pipe().expect("pipe");
    w.write_all(b"from the child").expect("write");
    drop(w);
    let mine = multiproc::SharedMut::from_slice(&[7u64; 10])
        .expect("block")
        .freeze()
        .expect("freeze");
    conn.send(&(PassedHandle::new(r.into()), mine))
        .expect("to parent");
    let _done: u8 = conn.recv().expect("done");
    sum
}

/// Over its channel to the parent: takes `(n, handle)` messages until
/// `n` is 0; returns how many handles came.
fn count_handles((conn, ()): (Connection, ())) -> u32 {
    let mut came = 0;
    loop {
        let (n, h): (u8, Option<PassedHandle>) = conn.recv().expect("a message");
        came += u32::from(h.is_some());
        if n == 0 {
            return came;
        }
    }
}

/// Given a copy of the parent's end of a `spawn_connected` channel: tries
/// to send a handle on it (as the last message, `n` = 0); "sent", or the
/// error, once the child at the other end exited (end of file here: on
/// Windows this process holds what it sent until the child took it).
fn send_on_a_passed_copy(conn: Connection) -> String {
    let (_r, w) = std::io::pipe().expect("pipe");
    let outcome = match conn.send(&(0u8, Some(PassedHandle::new(w.into())))) {
        Ok(()) => "sent".into(),
        Err(e) => e.to_string(),
    };
    let _eof = conn.recv::<u8>();
    outcome
}

/// Receives a message as a `PassedHandle` whatever it was; the outcome.
fn take_a_token_from_a_plain_message(conn: Connection) -> String {
    match conn.recv::<PassedHandle>() {
        Ok(_) => "took a handle".into(),
        Err(e) => e.to_string(),
    }
}

multiproc::entry!(
    swap_handles,
    count_handles,
    send_on_a_passed_copy,
    take_a_token_from_a_plain_message
);

#[test]
fn pipe_ends_and_shared_blocks_cross_a_spawn_connected_channel_both_ways() {
    let _serial = serial();
    let round = || {
        let (mut p, conn) = Process::spawn_connected(swap_handles, ()).unwrap();
        let (mut r, w) = std::io::pipe().unwrap();
        let block = multiproc::SharedMut::from_slice(&(0..100u64).collect::<Vec<_>>())
            .unwrap()
            .freeze()
            .unwrap();
        conn.send(&(PassedHandle::new(w.into()), &block)).unwrap();
        let (theirs, their_block): (PassedHandle, multiproc::Frozen<u64>) = conn.recv().unwrap();
        assert_eq!(&their_block[..], &[7u64; 10]);
        let mut got = String::new();
        std::io::PipeReader::from(theirs.into_inner())
            .read_to_string(&mut got)
            .unwrap();
        assert_eq!(got, "from the child");
        conn.send(&0u8).unwrap();
        assert_eq!(p.join().unwrap(), 4950);
        // The child wrote the sum into the end we sent, and every copy of
        // that end is closed (ours went with the message, the child's with
        // it): read_to_end returns.
        let mut sum = Vec::new();
        r.read_to_end(&mut sum).unwrap();
        assert_eq!(sum, 4950u64.to_le_bytes());
    };
    // The first round may create what a process keeps once made (under
    // Wine one handle, now and then, by whichever test of this binary
    // gets there first); the counts are compared around the second.
    round();
    let before = census();
    round();
    assert_eq!(census(), before);
}

#[test]
fn a_copy_of_a_connected_end_passed_on_is_a_plain_end_again() {
    let _serial = serial();
    let (mut p, conn) = Process::spawn_connected(count_handles, ()).unwrap();
    // Ours carries them, the parent's way.
    let (_r, w) = std::io::pipe().unwrap();
    conn.send(&(1u8, Some(PassedHandle::new(w.into()))))
        .unwrap();
    // Our end passed on to a third process: there it knows no peer, and
    // sends as any end does (Unix: fds on the channel itself; Windows: the
    // third process holds them and the child takes them out of it). It
    // sends the last message.
    let mut third = Process::spawn(send_on_a_passed_copy, &conn).unwrap();
    assert_eq!(p.join().unwrap(), 2);
    assert_eq!(third.join().unwrap(), "sent");
}

#[test]
fn a_token_in_a_message_without_handles_names_none_of_the_childs_own() {
    let _serial = serial();
    let (ctl, theirs) = Pipe::duplex().unwrap();
    let mut p = Process::spawn(take_a_token_from_a_plain_message, theirs).unwrap();
    // A plain number, read as a handle token (4: a shape every handle
    // value has on Windows; fd 4 on Unix).
    ctl.send(&4u64).unwrap();
    let outcome = p.join().unwrap();
    assert!(
        outcome.contains("no handles came with this message"),
        "{outcome}"
    );
}
