//! The handshake over loopback TCP: keys right, wrong and missing, silent
//! clients, a 4 GiB length prefix, garbage, a connection closed halfway.

use super::*;

#[test]
fn a_child_process_connects_back_with_the_key() {
    a_child_gets_through(&listener(), 21);
}

#[test]
fn a_wrong_key_is_refused_on_both_sides_and_the_listener_goes_on() {
    a_wrong_key_is_refused_and_the_next_child_gets_through(&listener());
}

#[test]
fn a_client_without_a_key_is_refused_by_a_listener_with_one() {
    let l = listener();
    l.set_handshake_timeout(Duration::from_millis(300));
    // Without a key the client has no handshake: it gets a connection
    // whose first message is the listener's challenge, and the listener
    // gives up on it when no answer comes.
    let conn = Client::connect(tcp_addr(&l), None).unwrap();
    let e = l.accept().unwrap_err();
    assert!(e.is_authentication(), "{e}");
    assert!(
        e.to_string().contains("did not complete the handshake"),
        "{e}"
    );
    let challenge = conn.recv_bytes().unwrap();
    assert!(
        challenge.starts_with(b"#CHALLENGE#{sha256}"),
        "{challenge:?}"
    );
    assert!(conn.recv_bytes().unwrap_err().is_eof());
}

#[test]
fn a_client_with_a_key_is_refused_by_a_listener_without_one() {
    let l = Listener::bind("127.0.0.1:0", None).unwrap();
    let e =
        Client::connect_timeout(tcp_addr(&l), Some(KEY), Duration::from_millis(300)).unwrap_err();
    assert!(e.is_authentication(), "{e}");
    assert!(
        e.to_string().contains("did not complete the handshake"),
        "{e}"
    );
    // The listener gave the connection out as it was; the client closed
    // it when its handshake failed.
    let conn = l.accept().unwrap();
    assert!(conn.recv_bytes().unwrap_err().is_eof());
}

#[test]
fn a_silent_client_does_not_hold_up_the_others() {
    let l = listener();
    let _silent = TcpStream::connect(tcp_addr(&l)).unwrap();
    // The silent client's handshake waits for its timeout (10 s); the
    // child connecting after it is accepted first.
    a_child_gets_through(&l, 4);
}

#[test]
fn a_silent_client_is_refused_after_the_handshake_timeout() {
    let l = listener();
    l.set_handshake_timeout(Duration::from_millis(200));
    let mut silent = TcpStream::connect(tcp_addr(&l)).unwrap();
    let e = l.accept().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Authentication);
    assert!(e.to_string().contains("within 200ms"), "{e}");
    // What it got: the challenge, then the listener closed the connection.
    silent.set_read_timeout(Some(LONG)).unwrap();
    let mut got = Vec::new();
    silent.read_to_end(&mut got).unwrap();
    assert_eq!(&got[..8], &(11 + 8 + 40u64).to_le_bytes());
    assert_eq!(&got[8..27], b"#CHALLENGE#{sha256}");
    assert_eq!(got.len(), 8 + 59);
}

/// Reads the listener's challenge frame off a raw socket.
fn read_challenge(s: &mut TcpStream) -> Vec<u8> {
    s.set_read_timeout(Some(LONG)).unwrap();
    let mut header = [0u8; 8];
    s.read_exact(&mut header).unwrap();
    let mut body = vec![0u8; u64::from_le_bytes(header) as usize];
    s.read_exact(&mut body).unwrap();
    body
}

#[test]
fn a_4_gib_length_prefix_is_refused_at_once() {
    let l = listener();
    // Long enough that only the length check can end this handshake.
    l.set_handshake_timeout(LONG * 4);
    let mut s = TcpStream::connect(tcp_addr(&l)).unwrap();
    read_challenge(&mut s);
    s.write_all(&(4u64 << 30).to_le_bytes()).unwrap();
    let e = l.accept().unwrap_err();
    assert!(e.is_authentication(), "{e}");
    assert!(
        e.to_string().contains("4294967296 bytes (at most 256)"),
        "{e}"
    );
}

#[test]
fn garbage_is_refused_and_the_listener_goes_on() {
    let l = listener();
    l.set_handshake_timeout(LONG * 4);
    let mut s = TcpStream::connect(tcp_addr(&l)).unwrap();
    read_challenge(&mut s);
    let mut garbage = 40u64.to_le_bytes().to_vec();
    garbage.extend((0..40u8).map(|i| i.wrapping_mul(37)));
    s.write_all(&garbage).unwrap();
    let e = l.accept().unwrap_err();
    assert!(e.is_authentication(), "{e}");
    assert!(e.to_string().contains("its key is not ours"), "{e}");
    // The listener said so before closing.
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    assert_eq!(rest, [&9u64.to_le_bytes()[..], b"#FAILURE#"].concat());

    a_child_gets_through(&l, 1);
}

#[test]
fn a_connection_closed_during_the_handshake_is_an_error_not_a_hang() {
    let l = listener();
    l.set_handshake_timeout(LONG * 4);
    let mut s = TcpStream::connect(tcp_addr(&l)).unwrap();
    read_challenge(&mut s);
    drop(s);
    let e = l.accept().unwrap_err();
    assert!(e.is_authentication(), "{e}");
    assert!(e.to_string().contains("closed the connection"), "{e}");
}
