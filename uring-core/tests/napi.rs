//! NAPI busy polling with tracking strategies and static ids
//! (`IORING_REGISTER_NAPI` with an `io_uring_napi_op`, 6.13), checked
//! against what the kernel reports back: every register call returns the
//! settings in force before it, so each step reads the previous one.

mod common;

use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;

use common::*;
use uring_core::{Error, IoPoll, Napi, NapiSettings, NapiTracking, Options, Ring, sys};

/// An id no NAPI instance has (far above `MIN_NAPI_ID`, `NR_CPUS + 1`);
/// the kernel does not check that a static id is live.
const SOME_ID: u32 = 0x4000_0001;

fn errno(e: Error) -> i32 {
    e.raw_os_error().unwrap_or_else(|| panic!("expected a kernel errno, got {e}"))
}

/// A started ring, or `None` (with the reason printed) when this kernel
/// has no NAPI strategies.
fn napi_ring(test: &str) -> Option<Ring> {
    let ring = ring(8);
    match ring.register().register_napi(Napi::default(), NapiTracking::DYNAMIC) {
        Ok(_) => {
            ring.register().unregister_napi().unwrap();
            Some(ring)
        }
        Err(e @ Error::Unsupported { .. }) => {
            println!("SKIPPED {test}: {e}");
            None
        }
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn each_strategy_is_reported_back_by_the_next_registration() {
    let Some(ring) = napi_ring("each_strategy_is_reported_back_by_the_next_registration") else { return };
    let r = ring.register();
    // After the probe's unregister the ring is inactive, with nothing set.
    let fast = Napi { busy_poll_usec: 50, prefer_busy_poll: true };
    let before = r.register_napi(fast, NapiTracking::STATIC).unwrap();
    assert_eq!(before, NapiSettings { napi: Napi::default(), tracking: NapiTracking::INACTIVE });
    let slow = Napi { busy_poll_usec: 7, prefer_busy_poll: false };
    let before = r.register_napi(slow, NapiTracking::DYNAMIC).unwrap();
    assert_eq!(before, NapiSettings { napi: fast, tracking: NapiTracking::STATIC }, "static, 50 us, prefer");
    let before = r.register_napi(fast, NapiTracking::STATIC).unwrap();
    assert_eq!(before, NapiSettings { napi: slow, tracking: NapiTracking::DYNAMIC }, "dynamic, 7 us");
    // Unregister reports the time and flag (the kernel leaves the strategy
    // out) and makes the ring inactive, which the next call shows.
    assert_eq!(r.unregister_napi().unwrap(), fast);
    let before = r.register_napi(slow, NapiTracking::DYNAMIC).unwrap();
    assert_eq!(before, NapiSettings { napi: Napi::default(), tracking: NapiTracking::INACTIVE });
    // The 6.9 form registers dynamic tracking.
    assert_eq!(r.napi(fast).unwrap(), slow);
    assert_eq!(r.register_napi(slow, NapiTracking::DYNAMIC).unwrap().tracking, NapiTracking::DYNAMIC);
}

#[test]
fn inactive_and_unknown_strategies_are_refused_as_the_kernel_would() {
    let Some(ring) = napi_ring("inactive_and_unknown_strategies_are_refused_as_the_kernel_would") else { return };
    let r = ring.register();
    for bad in [NapiTracking::INACTIVE, NapiTracking::from_raw(2)] {
        let err = r.register_napi(Napi::default(), bad).unwrap_err();
        assert!(matches!(&err, Error::InvalidArgument(m) if m.contains("DYNAMIC and STATIC")), "{err}");
        // The kernel itself says EINVAL, and changes nothing but reporting.
        let mut raw = sys::io_uring_napi {
            opcode: sys::IO_URING_NAPI_REGISTER_OP as u8,
            op_param: bad.raw(),
            ..Default::default()
        };
        // SAFETY: a 16-byte io_uring_napi the kernel copies in and out
        // during the call.
        let e = unsafe { r.raw("IORING_REGISTER_NAPI", sys::IORING_REGISTER_NAPI, (&raw mut raw).cast(), 1) };
        assert_eq!(errno(e.unwrap_err()), libc::EINVAL);
        assert_eq!(raw.op_param, NapiTracking::INACTIVE.raw(), "the settings in force came back first");
    }
    // An unknown register op is EINVAL from the kernel too.
    let mut raw = sys::io_uring_napi { opcode: 9, ..Default::default() };
    // SAFETY: as above.
    let e = unsafe { r.raw("IORING_REGISTER_NAPI", sys::IORING_REGISTER_NAPI, (&raw mut raw).cast(), 1) };
    assert_eq!(errno(e.unwrap_err()), libc::EINVAL);
}

#[test]
fn static_ids_are_added_once_deleted_once_and_only_under_static_tracking() {
    let Some(ring) = napi_ring("static_ids_are_added_once_deleted_once_and_only_under_static_tracking") else {
        return;
    };
    let r = ring.register();
    // Inactive, then dynamic: no static list to edit.
    assert_eq!(errno(r.napi_add_id(SOME_ID).unwrap_err()), libc::EINVAL);
    r.register_napi(Napi::default(), NapiTracking::DYNAMIC).unwrap();
    assert_eq!(errno(r.napi_add_id(SOME_ID).unwrap_err()), libc::EINVAL);
    assert_eq!(errno(r.napi_del_id(SOME_ID).unwrap_err()), libc::EINVAL);

    let settings = Napi { busy_poll_usec: 10, prefer_busy_poll: false };
    r.register_napi(settings, NapiTracking::STATIC).unwrap();
    // Deleting an id never added: ENOENT.
    let err = r.napi_del_id(SOME_ID).unwrap_err();
    assert!(matches!(&err, Error::Io { call: "IO_URING_NAPI_STATIC_DEL_ID", .. }), "{err}");
    assert_eq!(errno(err), libc::ENOENT);
    // Added once; a second add is EEXIST; each call reports the settings.
    let now = r.napi_add_id(SOME_ID).unwrap();
    assert_eq!(now, NapiSettings { napi: settings, tracking: NapiTracking::STATIC });
    let err = r.napi_add_id(SOME_ID).unwrap_err();
    assert!(matches!(&err, Error::Io { call: "IO_URING_NAPI_STATIC_ADD_ID", .. }), "{err}");
    assert_eq!(errno(err), libc::EEXIST);
    r.napi_add_id(SOME_ID + 1).unwrap();
    // Deleted once; then it is gone.
    r.napi_del_id(SOME_ID).unwrap();
    assert_eq!(errno(r.napi_del_id(SOME_ID).unwrap_err()), libc::ENOENT);
    // Registering again empties the list: the other id is gone too.
    r.register_napi(settings, NapiTracking::STATIC).unwrap();
    assert_eq!(errno(r.napi_del_id(SOME_ID + 1).unwrap_err()), libc::ENOENT);
    // Id 0 is "no NAPI" and small ids are sender CPUs: EINVAL.
    assert_eq!(errno(r.napi_add_id(0).unwrap_err()), libc::EINVAL);
    assert_eq!(errno(r.napi_del_id(1).unwrap_err()), libc::EINVAL);
}

#[test]
fn a_loopback_sockets_napi_id_is_refused_as_no_napi() {
    let Some(ring) = napi_ring("a_loopback_sockets_napi_id_is_refused_as_no_napi") else { return };
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (mut s, _) = l.accept().unwrap();
    use std::io::{Read, Write};
    c.write_all(b"x").unwrap();
    let mut b = [0u8; 1];
    s.read_exact(&mut b).unwrap();
    let mut id = u32::MAX;
    let mut len = 4 as libc::socklen_t;
    // SAFETY: valid out-pointers for the call.
    let rc = unsafe {
        libc::getsockopt(s.as_raw_fd(), libc::SOL_SOCKET, libc::SO_INCOMING_NAPI_ID, (&raw mut id).cast(), &mut len)
    };
    assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
    if id != 0 {
        println!("SKIPPED a_loopback_sockets_napi_id_is_refused_as_no_napi: loopback reports NAPI id {id} here");
        return;
    }
    let r = ring.register();
    r.register_napi(Napi::default(), NapiTracking::STATIC).unwrap();
    assert_eq!(errno(r.napi_add_id(id).unwrap_err()), libc::EINVAL, "loopback has no NAPI instance");
}

#[test]
fn napi_on_an_iopoll_ring_or_a_stopped_ring_is_refused_by_name() {
    let Some(_) = napi_ring("napi_on_an_iopoll_ring_or_a_stopped_ring_is_refused_by_name") else { return };
    let mut polled = Ring::new(Options::default().entries(8).iopoll(IoPoll::On)).unwrap();
    polled.start().unwrap();
    let err = polled.register().register_napi(Napi::default(), NapiTracking::DYNAMIC).unwrap_err();
    assert!(matches!(&err, Error::InvalidArgument(m) if m.contains("IOPOLL")), "{err}");
    // What the kernel says there.
    assert_eq!(errno(polled.register().napi(Napi::default()).unwrap_err()), libc::EINVAL);
    polled.stop();
    assert!(matches!(polled.register().napi_add_id(SOME_ID), Err(Error::Stopped)));
    assert!(matches!(polled.register().register_napi(Napi::default(), NapiTracking::STATIC), Err(Error::Stopped)));
}
