//! The echo example's load mode, run in-process against the real kernel:
//! every echoed byte is compared by the clients, and the run must have
//! done real work.

#[path = "../examples/echo.rs"]
#[allow(unreachable_pub, missing_docs)]
mod echo;

use std::time::Duration;

use echo::{LoadConfig, Proto, Report, ServerConfig};

/// Runs a load; `None` (after printing SKIPPED) when this machine cannot
/// run io_uring at all.
fn load(name: &str, proto: Proto, clients: usize, size: usize, server: ServerConfig) -> Option<Report> {
    if let Err(e) = uring_core::Ring::new(uring_core::Options::default().entries(8)) {
        eprintln!("SKIPPED {name}: no io_uring here: {e}");
        return None;
    }
    let cfg = LoadConfig { proto, clients, duration: Duration::from_millis(700), size, server };
    let report = echo::run_load(cfg).unwrap_or_else(|e| panic!("{name}: {e}"));
    println!("{report}");
    assert!(report.errors.is_empty(), "{name}: {:?}", report.errors);
    assert!(report.requests > 0, "{name}: no request completed");
    assert!(report.ok());
    assert_eq!(
        report.server.bytes,
        report.requests * size as u64,
        "{name}: the server echoed exactly what the clients verified"
    );
    assert_eq!(report.server.conn_errors, 0, "{name}");
    Some(report)
}

#[test]
fn tcp_echo_64_bytes() {
    if let Some(r) = load("tcp_echo_64_bytes", Proto::Tcp, 4, 64, ServerConfig::default()) {
        assert_eq!(r.server.accepted, 4);
    }
}

#[test]
fn tcp_echo_4096_bytes() {
    load("tcp_echo_4096_bytes", Proto::Tcp, 4, 4096, ServerConfig::default());
}

#[test]
fn tcp_echo_without_bundles() {
    let server = ServerConfig { bundles: false, ..ServerConfig::default() };
    if let Some(r) = load("tcp_echo_without_bundles", Proto::Tcp, 3, 3000, server) {
        assert!(!r.server.bundles);
        assert_eq!(r.server.widest_bundle, 0);
    }
}

/// A ring of 8 buffers of 512 bytes for 4 clients sending 5000 bytes:
/// receives run dry (`-ENOBUFS`) and are re-armed, bundles span several
/// buffers and wrap around the ring, sends are of held buffers only.
#[test]
fn tcp_echo_with_a_starved_buffer_ring() {
    let server = ServerConfig { entries: 8, buf_size: 512, ..ServerConfig::default() };
    if let Some(r) = load("tcp_echo_with_a_starved_buffer_ring", Proto::Tcp, 4, 5000, server) {
        assert!(r.server.rearms > 0, "the streams ran dry and were re-armed: {:?}", r.server);
        if r.server.bundles {
            assert!(r.server.widest_bundle > 1, "bundles spanned buffers: {:?}", r.server);
        }
    }
}

#[test]
fn udp_echo_64_and_4096_bytes() {
    load("udp_echo_64_bytes", Proto::Udp, 4, 64, ServerConfig::default());
    load("udp_echo_4096_bytes", Proto::Udp, 4, 4096, ServerConfig::default());
}

#[test]
fn udp_echo_with_a_starved_buffer_ring() {
    let server = ServerConfig { entries: 2, ..ServerConfig::default() };
    if let Some(r) = load("udp_echo_with_a_starved_buffer_ring", Proto::Udp, 6, 200, server) {
        assert!(r.server.rearms > 0, "the stream ran dry and was re-armed: {:?}", r.server);
    }
}

#[test]
fn bad_load_arguments_are_errors() {
    let base = LoadConfig {
        proto: Proto::Udp,
        clients: 1,
        duration: Duration::from_millis(10),
        size: 70000,
        server: ServerConfig::default(),
    };
    assert!(echo::run_load(base).unwrap_err().contains("--size"));
    assert!(echo::run_load(LoadConfig { size: 0, proto: Proto::Tcp, ..base }).unwrap_err().contains("--size"));
    assert!(echo::run_load(LoadConfig { clients: 0, size: 8, ..base }).unwrap_err().contains("--clients"));
}

/// Connections that vanish (reset with unread echoes, or closed half-way
/// through a message) cost the server only those connections: a client
/// after them is served normally.
#[test]
fn a_reset_connection_does_not_stop_the_server() {
    use std::io::Write;
    use std::net::TcpStream;
    use std::os::fd::AsRawFd;
    use std::time::Instant;

    if let Err(e) = uring_core::Ring::new(uring_core::Options::default().entries(8)) {
        eprintln!("SKIPPED a_reset_connection_does_not_stop_the_server: no io_uring here: {e}");
        return;
    }
    let server = echo::Server::spawn(Proto::Tcp, ServerConfig::default(), 0).unwrap();
    for i in 0..3 {
        let mut s = TcpStream::connect(server.addr).unwrap();
        s.write_all(&vec![7u8; 100_000]).unwrap();
        if i % 2 == 0 {
            // SO_LINGER 0: close sends a reset, with the echo unread.
            let linger = libc::linger { l_onoff: 1, l_linger: 0 };
            // SAFETY: setsockopt reads one linger struct, valid for the call.
            let r = unsafe {
                libc::setsockopt(
                    s.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_LINGER,
                    (&linger as *const libc::linger).cast(),
                    size_of::<libc::linger>() as libc::socklen_t,
                )
            };
            assert_eq!(r, 0);
        }
        drop(s);
    }
    let until = Instant::now() + Duration::from_millis(300);
    let lat = echo::client(Proto::Tcp, server.addr, 9, 1000, until, u64::MAX).unwrap();
    assert!(!lat.is_empty(), "the client after the resets was served");
    let stats = server.stop().unwrap();
    assert_eq!(stats.accepted, 4);
    println!("{stats:?}");
}
