//! Connections over TCP: which addresses a listener takes, messages,
//! `poll` and `wait`, passing a connection to a child, a dropped listener,
//! addresses parsed and printed, no handles either way.

use super::*;

#[test]
fn without_a_key_only_local_addresses_are_accepted() {
    let e = Listener::bind("0.0.0.0:0", None).unwrap_err();
    assert!(e.is_usage(), "{e}");
    assert!(
        e.to_string().contains("without an authentication key"),
        "{e}"
    );
    let e = Listener::bind("127.0.0.1:0", Some(b"")).unwrap_err();
    assert!(e.is_usage(), "{e}");

    // On loopback it works, without a handshake.
    let l = Listener::bind("127.0.0.1:0", None).unwrap();
    let c = Client::connect(l.address(), None).unwrap();
    let s = l.accept().unwrap();
    c.send(&7u8).unwrap();
    assert_eq!(s.recv::<u8>().unwrap(), 7);
}

#[test]
fn a_listener_with_a_key_may_listen_on_every_interface() {
    let l = Listener::bind("0.0.0.0:0", Some(KEY)).unwrap();
    let port = tcp_addr(&l).port();
    let c = Client::connect(
        ("127.0.0.1".parse::<std::net::IpAddr>().unwrap(), port),
        Some(KEY),
    )
    .unwrap();
    let s = l.accept().unwrap();
    s.send(&"hi").unwrap();
    assert_eq!(c.recv::<String>().unwrap(), "hi");
}

#[test]
fn big_messages_and_the_size_cap_work_over_tcp() {
    let l = listener();
    let (mut child, conn) = an_echoing_child(&l);
    conn.set_max_message_len(1000);
    conn.send_bytes(&[1; 1001]).unwrap();
    let e = conn.recv_bytes().unwrap_err();
    assert!(e.is_message_too_large(), "{e}");
    drop(conn);
    assert_eq!(child.join().unwrap(), Ok(5));
}

#[test]
fn poll_and_wait_see_a_tcp_message() {
    let l = listener();
    let addr = l.address().to_string();
    let mut child = Process::spawn(echo_back, (addr, KEY.to_vec())).unwrap();
    let conn: Connection = l.accept().unwrap();
    assert!(!conn.poll(Some(Duration::ZERO)).unwrap());
    conn.send(&1u32).unwrap();
    assert_eq!(
        multiproc::wait(&[(&conn).into()], Some(LONG)).unwrap(),
        vec![0]
    );
    assert!(conn.poll(Some(Duration::ZERO)).unwrap());
    assert_eq!(conn.recv::<u32>().unwrap(), 1);
    drop(conn);
    assert_eq!(child.join().unwrap(), Ok(1));
}

#[test]
fn a_tcp_connection_passes_to_a_child_on_unix_only() {
    let l = listener();
    let mine = Client::connect(l.address(), Some(KEY)).unwrap();
    let theirs = l.accept().unwrap();
    let child = Process::spawn(add_one, theirs);
    if cfg!(windows) {
        // A Winsock socket can't be duplicated into another process with
        // DuplicateHandle.
        let e = child.unwrap_err();
        assert!(e.is_encode(), "{e}");
        assert!(e.to_string().contains("can't be passed"), "{e}");
        return;
    }
    let mut child = child.unwrap();
    mine.send(&41u32).unwrap();
    assert_eq!(mine.recv::<u32>().unwrap(), 42);
    assert_eq!(child.join().unwrap(), 41);
}

#[test]
fn a_dropped_listener_refuses_connections() {
    let l = listener();
    let addr = tcp_addr(&l);
    drop(l);
    let e = Client::connect(addr, Some(KEY)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Io, "{e}");
}

/// A child that another thread is starting holds a copy of every fd of
/// this process, the listener's socket too, from its fork until its exec
/// closes them (close-on-exec): dropping the listener then must still stop
/// it listening, not leave the copy accepting clients that are reset once
/// it closes (seen as an `Authentication` error, "Connection reset by
/// peer", in `a_dropped_listener_refuses_connections` under 16 test
/// threads). Here the child waits before its exec (std's `pre_exec`, after
/// a fork) until the test lets it go. Linux: there the drop shuts the
/// socket down, which stops every copy; other Unixes can't (see
/// `Listener`'s drop docs), and Windows children inherit no sockets.
#[cfg(target_os = "linux")]
#[test]
fn a_dropped_listener_refuses_connections_while_a_starting_child_holds_its_socket() {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let l = listener();
    let addr = tcp_addr(&l);
    let (mut forked_r, forked_w) = std::io::pipe().unwrap();
    let (go_r, mut go_w) = std::io::pipe().unwrap();
    let (forked, go) = (forked_w.as_raw_fd(), go_r.as_raw_fd());
    let mut cmd = std::process::Command::new("true");
    // SAFETY: the closure runs in the forked child before its exec and
    // makes only async-signal-safe calls (write(2), read(2)) on fds that
    // the child has (copies of this process's, open until the exec).
    unsafe {
        cmd.pre_exec(move || {
            libc::write(forked, b"f".as_ptr().cast(), 1);
            let mut b = 0u8;
            libc::read(go, (&raw mut b).cast(), 1);
            Ok(())
        });
    }
    // `spawn` returns only once the child has exec'd: on a thread of its own.
    let starting = std::thread::spawn(move || cmd.spawn().unwrap().wait().unwrap());
    let mut b = [0u8];
    forked_r.read_exact(&mut b).unwrap();
    drop(l);
    let e = Client::connect(addr, Some(KEY)).unwrap_err();
    go_w.write_all(b"g").unwrap();
    assert!(starting.join().unwrap().success());
    assert_eq!(e.kind(), ErrorKind::Io, "{e}");
}

#[test]
fn local_socket_addresses_work_on_unix_only() {
    let dir = std::env::temp_dir().join(format!("multiproc-listener-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("sock");
    let addr = format!("unix:{}", path.display());
    let l = Listener::bind(addr.as_str(), Some(KEY));
    if cfg!(windows) {
        let e = l.unwrap_err();
        assert_eq!(
            e.io_error().unwrap().kind(),
            std::io::ErrorKind::Unsupported
        );
        return;
    }
    let l = l.unwrap();
    let mut child = Process::spawn(connect_back, (addr, Some(KEY.to_vec()), 3)).unwrap();
    assert_eq!(serve_connect_back(&l, child.pid()), 3);
    assert_eq!(child.join().unwrap(), Ok(6));
    assert!(path.exists());
    drop(l);
    assert!(
        !path.exists(),
        "the socket file is removed with the listener"
    );
    std::fs::remove_dir(&dir).unwrap();
}

#[test]
fn addresses_parse_and_print() {
    let a: Address = "127.0.0.1:5000".parse().unwrap();
    assert_eq!(a, Address::Tcp(([127, 0, 0, 1], 5000).into()));
    assert!(a.is_local());
    assert!(!"10.1.2.3:1".parse::<Address>().unwrap().is_local());
    assert_eq!("[::1]:7".parse::<Address>().unwrap().to_string(), "[::1]:7");
    assert!("not an address".parse::<Address>().unwrap_err().is_usage());
}

#[test]
fn a_listener_connection_carries_no_handles_either_way() {
    let l = listener();
    let mine = Client::connect(l.address(), Some(KEY)).unwrap();
    let theirs = l.accept().unwrap();
    // Refused at send, before anything is written.
    let (_r, w) = std::io::pipe().unwrap();
    let err = mine
        .send(&multiproc::PassedHandle::new(w.into()))
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("a Listener/Client connection carries no handles"),
        "{err}"
    );
    mine.send(&1u8).unwrap();
    assert_eq!(theirs.recv::<u8>().unwrap(), 1);
    // A frame flagged as carrying handles (bit 62) whose block names this
    // process and a handle of it (Windows: a held block, which a pipe end
    // would take out of the process it names): refused, whatever a peer
    // over the network names.
    let (me, start) = multiproc::test_hooks::process_identity().unwrap();
    let (r, _w) = std::io::pipe().unwrap();
    #[cfg(windows)]
    let value = std::os::windows::io::AsRawHandle::as_raw_handle(&r) as u64;
    #[cfg(unix)]
    let value = std::os::fd::AsRawFd::as_raw_fd(&r) as u64;
    let mut body = Vec::new();
    body.extend_from_slice(&1u32.to_le_bytes());
    body.extend_from_slice(&4u32.to_le_bytes());
    for v in [1 | u64::from(me) << 32, start, 1, value] {
        body.extend_from_slice(&v.to_le_bytes());
    }
    body.push(0);
    let mut frame = (body.len() as u64 | 1 << 62).to_le_bytes().to_vec();
    frame.extend_from_slice(&body);
    mine.send_unframed(&frame).unwrap();
    let err = theirs.recv::<multiproc::PassedHandle>().unwrap_err();
    assert!(
        err.to_string()
            .contains("a Listener/Client connection carries no handles"),
        "{err}"
    );
    drop(r);
}
