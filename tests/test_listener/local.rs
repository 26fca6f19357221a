//! Local addresses (`Listener::bind_local`).

use super::*;

// ------------------------------------------------- local addresses
//
// `Listener::bind_local`: a named pipe on Windows (`\\.\pipe\...`), a
// Unix-domain socket in a private directory on Unix. The same tests run on
// both; on Windows they exercise the named-pipe listener and client.

/// A listener with `KEY` on a fresh local address of the platform's kind.
fn local_listener() -> Listener {
    let l = Listener::bind_local(Some(KEY)).unwrap();
    match l.address() {
        Address::Pipe(name) if cfg!(windows) => {
            assert!(name.starts_with(r"\\.\pipe\multiproc-"), "{name}");
        }
        Address::Local(path) if cfg!(unix) => {
            assert!(path.ends_with("listener.sock"), "{}", path.display());
        }
        other => panic!("not this platform's local address: {other}"),
    }
    l
}

#[test]
fn a_child_connects_to_a_local_address_and_echoes() {
    let l = local_listener();
    let (mut child, conn) = an_echoing_child(&l);
    // `wait` sees the connection (on Windows a pipe end, with a handle
    // `WaitForMultipleObjects` waits on, unlike a TCP socket).
    assert!(!conn.poll(Some(Duration::ZERO)).unwrap());
    conn.send(&7u32).unwrap();
    assert_eq!(
        multiproc::wait(&[(&conn).into()], Some(LONG)).unwrap(),
        vec![0]
    );
    assert_eq!(conn.recv::<u32>().unwrap(), 7);
    drop(conn);
    assert_eq!(child.join().unwrap(), Ok(5));
}

#[test]
fn a_wrong_key_at_a_local_address_is_refused_and_the_listener_goes_on() {
    a_wrong_key_is_refused_and_the_next_child_gets_through(&local_listener());
}

#[test]
fn a_silent_local_client_is_dropped_at_its_deadline_and_another_gets_through() {
    let l = local_listener();
    l.set_handshake_timeout(Duration::from_secs(2));
    // Without a key the client runs no handshake: it connects and says
    // nothing.
    let silent = Client::connect(l.address(), None).unwrap();
    let addr = l.address().to_string();
    let mut child = Process::spawn(connect_back, (addr, Some(KEY.to_vec()), 9)).unwrap();
    // Two outcomes, in the order the handshakes end: the child's
    // connection, and the silent one refused after its 2 s.
    let (mut served, mut refused) = (0, 0);
    for _ in 0..2 {
        match l.accept() {
            Ok(conn) => {
                let (pid, n): (u32, u64) = conn.recv().unwrap();
                assert_eq!((pid, n), (child.pid(), 9));
                conn.send(&(n * 2)).unwrap();
                served += 1;
            }
            Err(e) => {
                assert!(e.is_authentication(), "{e}");
                assert!(e.to_string().contains("within 2s"), "{e}");
                refused += 1;
            }
        }
    }
    assert_eq!((served, refused), (1, 1));
    assert_eq!(child.join().unwrap(), Ok(18));
    // What the silent client got: the challenge, then end of file.
    let challenge = silent.recv_bytes().unwrap();
    assert!(
        challenge.starts_with(b"#CHALLENGE#{sha256}"),
        "{challenge:?}"
    );
    assert!(silent.recv_bytes().unwrap_err().is_eof());
}

#[test]
fn eight_clients_connect_to_a_local_address_at_once() {
    // On Windows, eight clients opening the pipe together find its one
    // waiting instance busy (ERROR_PIPE_BUSY) and wait for the next
    // (WaitNamedPipeW).
    let l = local_listener();
    let args = (Barrier::new(8).unwrap(), l.address().to_string());
    let mut children: Vec<_> = (0..8)
        .map(|_| Process::spawn(connect_back_together, &args).unwrap())
        .collect();
    let mut seen = Vec::new();
    for _ in 0..8 {
        let conn = l.accept().unwrap();
        let (pid, n): (u32, u64) = conn.recv().unwrap();
        assert_eq!(u64::from(pid), n);
        conn.send(&(n * 2)).unwrap();
        seen.push(pid);
    }
    seen.sort();
    let mut expected: Vec<u32> = children.iter().map(|c| c.pid()).collect();
    expected.sort();
    assert_eq!(seen, expected);
    for c in &mut children {
        let pid = u64::from(c.pid());
        assert_eq!(c.join().unwrap(), Ok(2 * pid));
    }
}

#[test]
fn a_second_listener_on_the_same_local_address_fails_clearly() {
    // Windows refuses the second pipe's first instance
    // (FILE_FLAG_FIRST_PIPE_INSTANCE). Wine 8 ignores that flag and creates
    // a second instance of the first listener's pipe; there the refusal
    // comes from the instance count `bind` checks after it (2, not 1), with
    // the same error.
    let l = local_listener();
    let e = Listener::bind(l.address(), Some(KEY)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Io, "{e}");
    assert_eq!(
        e.io_error().unwrap().kind(),
        std::io::ErrorKind::AddrInUse,
        "{e}"
    );
    assert!(e.to_string().contains(&l.address().to_string()), "{e}");
    // The first one still works.
    let c = Client::connect(l.address(), Some(KEY)).unwrap();
    let s = l.accept().unwrap();
    c.send(&3u8).unwrap();
    assert_eq!(s.recv::<u8>().unwrap(), 3);
}

#[test]
fn a_dropped_local_listener_refuses_connections_and_leaves_nothing() {
    let l = local_listener();
    let addr = l.address().clone();
    drop(l);
    let e = Client::connect_timeout(&addr, Some(KEY), Duration::from_secs(1)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Io, "{e}");
    assert_eq!(
        e.io_error().unwrap().kind(),
        std::io::ErrorKind::NotFound,
        "{e}"
    );
    if let Address::Local(path) = &addr {
        assert!(!path.exists());
        assert!(
            !path.parent().unwrap().exists(),
            "the private directory is removed"
        );
    }
}

#[test]
fn a_local_connection_passes_to_a_child_and_still_carries_no_handles() {
    // A named-pipe connection is a pipe end like `Pipe`'s, so on Windows
    // too it can be passed to a child (a TCP one can't); in the child it is
    // still a Listener/Client connection.
    let l = local_listener();
    let mine = Client::connect(l.address(), Some(KEY)).unwrap();
    let theirs = l.accept().unwrap();
    let mut child = Process::spawn(add_one, theirs).unwrap();
    mine.send(&41u32).unwrap();
    assert_eq!(mine.recv::<u32>().unwrap(), 42);
    assert_eq!(child.join().unwrap(), 41);

    let mine = Client::connect(l.address(), Some(KEY)).unwrap();
    let theirs = l.accept().unwrap();
    let mut child = Process::spawn(send_a_handle, theirs).unwrap();
    let e = child.join().unwrap().expect("the child's send was refused");
    assert!(
        e.contains("a Listener/Client connection carries no handles"),
        "{e}"
    );
    drop(mine);
}

#[test]
fn handles_in_messages_on_a_local_connection_are_refused_clearly() {
    let l = local_listener();
    let mine = Client::connect(l.address(), Some(KEY)).unwrap();
    let theirs = l.accept().unwrap();
    let (_r, w) = std::io::pipe().unwrap();
    let e = mine
        .send(&multiproc::PassedHandle::new(w.into()))
        .unwrap_err();
    // Windows: a named pipe end, but opened by name, whose peer could name
    // any process as the holder of the handles; Unix: a socket without the
    // lane for them.
    let why = "a Listener/Client connection carries no handles";
    assert!(e.to_string().contains(why), "{e}");
    // Nothing went out; the connection goes on.
    mine.send(&1u8).unwrap();
    assert_eq!(theirs.recv::<u8>().unwrap(), 1);
}

#[test]
fn handle_count_is_back_to_start_after_100_local_connect_close_cycles() {
    let out = scenario("local::scenario_local_connect_close_cycles", |_| {});
    assert!(out.status.success());
}

#[test]
#[ignore = "a scenario: run by handle_count_is_back_to_start_after_100_local_connect_close_cycles"]
fn scenario_local_connect_close_cycles() {
    if !in_scenario("local::scenario_local_connect_close_cycles") {
        return;
    }
    let l = local_listener();
    let cycle = |i: u32| {
        let c = Client::connect(l.address(), Some(KEY)).unwrap();
        let s = l.accept().unwrap();
        c.send(&i).unwrap();
        assert_eq!(s.recv::<u32>().unwrap(), i);
        drop(s);
        assert!(c.recv::<u32>().unwrap_err().is_eof());
    };
    // Whatever a first connection sets up once.
    cycle(0);
    let before = multiproc::test_hooks::open_handle_count().unwrap();
    for i in 1..=100 {
        cycle(i);
    }
    assert_eq!(multiproc::test_hooks::open_handle_count().unwrap(), before);
}

#[test]
fn named_pipe_addresses_parse_and_print() {
    for s in [r"\\.\pipe\app", r"\\.\PIPE\app-1.x", r"\\.\pipe\a b ä"] {
        let a: Address = s.parse().unwrap();
        assert_eq!(a, Address::Pipe(s.into()));
        assert_eq!(a.to_string(), s);
        assert!(a.is_local());
    }
    let longest = format!(r"\\.\pipe\{}", "n".repeat(256 - 9));
    assert!(longest.parse::<Address>().is_ok());
    for bad in [
        r"\\host\pipe\app".to_string(),
        r"\\.\pipe\".to_string(),
        r"\\.\pipe\a\b".to_string(),
        r"\\.\mailslot\x".to_string(),
        format!("{longest}n"),
    ] {
        let e = bad.parse::<Address>().unwrap_err();
        assert!(e.is_usage(), "{bad}: {e}");
        assert!(e.to_string().contains("not a named pipe address"), "{e}");
    }
    if cfg!(unix) {
        let e = Listener::bind(r"\\.\pipe\app", Some(KEY)).unwrap_err();
        assert_eq!(
            e.io_error().unwrap().kind(),
            std::io::ErrorKind::Unsupported
        );
        let e = Client::connect(r"\\.\pipe\app", Some(KEY)).unwrap_err();
        assert_eq!(
            e.io_error().unwrap().kind(),
            std::io::ErrorKind::Unsupported
        );
    }
}
