//! Zero-copy receive registration against the running kernel, on kernels
//! and machines without a zero-copy capable queue: the support probe
//! cross-checked against the kernel's own query, and every registration
//! error path mapped to its documented error, each compared with the
//! kernel's raw answer to the same `IORING_REGISTER_ZCRX_IFQ`.

use std::ffi::c_void;
use std::io;
use std::path::Path;
use std::process::Command;

use uring_core::{CqeSize, Mapping, Options, Registrar, Ring, SetupFlags, SharedRing, sys};
use uring_zcrx::{Error, RefillOffsets, Zcrx, ZcrxConfig, ZcrxSupport, ZcrxTarget};

/// Marks the re-executed child of a test; its value is the test's name.
const CHILD_ENV: &str = "URING_ZCRX_HOST_CHILD";
/// `CAP_NET_ADMIN`'s bit.
const CAP_NET_ADMIN: u32 = 12;
/// An interface index no namespace has.
const NO_IFINDEX: u32 = 0x7fff_fff0;

fn ring_with(opts: Options) -> Ring {
    let mut ring = Ring::new(opts.entries(16)).expect("Ring::new");
    ring.start().expect("start");
    ring
}

/// A started ring fit for zero-copy receive.
fn ring(cqe: CqeSize) -> Ring {
    ring_with(Options::default().cqe_size(cqe))
}

fn lo() -> ZcrxTarget {
    ZcrxTarget::interface("lo", 0).expect("lo exists")
}

fn small(target: ZcrxTarget) -> ZcrxConfig {
    ZcrxConfig::new(target).area_len(256 << 10).refill_entries(64)
}

fn errno(e: &uring_core::Error) -> Option<i32> {
    e.raw_os_error()
}

// ---------------------------------------------------------------------------
// The raw registration, built here from the uapi structures.

/// The memory and the argument structures of one raw
/// `IORING_REGISTER_ZCRX_IFQ`, boxed so that the pointers between them
/// stay valid however the value moves.
struct RawReg {
    area: Mapping,
    region: Mapping,
    area_reg: Box<sys::io_uring_zcrx_area_reg>,
    rd: Box<sys::io_uring_region_desc>,
    reg: Box<sys::io_uring_zcrx_ifq_reg>,
}

impl RawReg {
    /// A 64 KiB area and a one-page refill region with `rq_entries`
    /// entries, for interface `if_idx` queue `if_rxq` with `flags`.
    fn new(if_idx: u32, if_rxq: u32, rq_entries: u32, flags: u32) -> Self {
        let page = Mapping::page_size();
        let area = Mapping::anonymous(64 << 10, false).expect("mmap area");
        let region = Mapping::anonymous(page, false).expect("mmap region");
        let mut area_reg = Box::new(sys::io_uring_zcrx_area_reg {
            addr: area.ptr() as u64,
            len: area.len() as u64,
            ..Default::default()
        });
        let mut rd = Box::new(sys::io_uring_region_desc {
            user_addr: region.ptr() as u64,
            size: region.len() as u64,
            flags: sys::IORING_MEM_REGION_TYPE_USER,
            ..Default::default()
        });
        let reg = Box::new(sys::io_uring_zcrx_ifq_reg {
            if_idx,
            if_rxq,
            rq_entries,
            flags,
            area_ptr: (&raw mut *area_reg) as u64,
            region_ptr: (&raw mut *rd) as u64,
            ..Default::default()
        });
        RawReg { area, region, area_reg, rd, reg }
    }

    /// Issues the registration through `registrar`; the kernel's answer.
    fn register(&mut self, registrar: &Registrar<'_>) -> Result<u32, uring_core::Error> {
        let arg = (&raw mut *self.reg).cast::<c_void>();
        // SAFETY: `reg` is an `io_uring_zcrx_ifq_reg` whose `area_ptr` and
        // `region_ptr` name the boxed `area_reg` and `rd`, which describe
        // the two anonymous mappings `self` owns; all live for the call.
        // Should the kernel accept the registration, it pins those pages
        // and keeps using them until the ring is closed: every caller
        // then attaches `self` to the ring or leaks it ([`keep`]), so the
        // memory outlives the registration.
        unsafe { registrar.raw("IORING_REGISTER_ZCRX_IFQ", sys::IORING_REGISTER_ZCRX_IFQ, arg, 1) }
    }
}

/// Registers raw on `ring`; on success the memory is attached to the ring
/// so that it stays mapped as long as the kernel may use it.
fn raw_on(ring: &mut Ring, if_idx: u32, if_rxq: u32, rq_entries: u32, flags: u32) -> Result<RawOutcome, i32> {
    let mut raw = RawReg::new(if_idx, if_rxq, rq_entries, flags);
    let res = raw.register(&ring.register());
    match res {
        Ok(_) => {
            let out = RawOutcome {
                offsets: raw.reg.offsets,
                zcrx_id: raw.reg.zcrx_id,
                rx_buf_len: raw.reg.rx_buf_len,
                rq_entries: raw.reg.rq_entries,
                token: raw.area_reg.rq_area_token,
                region_len: raw.region.len().min(raw.rd.size as usize),
                area_len: raw.area.len(),
            };
            keep(ring, raw);
            Ok(out)
        }
        Err(e) => Err(errno(&e).unwrap_or_else(|| panic!("no errno in {e:?}"))),
    }
}

/// What a successful raw registration wrote back.
#[derive(Debug)]
struct RawOutcome {
    offsets: sys::io_uring_zcrx_offsets,
    zcrx_id: u32,
    rx_buf_len: u32,
    rq_entries: u32,
    token: u64,
    region_len: usize,
    area_len: usize,
}

/// Keeps an accepted registration's memory mapped until the ring closes.
fn keep(ring: &mut Ring, raw: RawReg) {
    let RawReg { area, region, .. } = raw;
    ring.attach(Box::new((area, region))).expect("attach");
}

// ---------------------------------------------------------------------------
// The support probe.

/// A blind `IORING_REGISTER_QUERY` (no ring) for one query entry:
/// `Err(errno)` if the register call itself failed, else the entry's
/// result and data.
fn raw_query<T: Default>(op: u32) -> Result<(i32, T), i32> {
    let mut data = T::default();
    let mut hdr = sys::io_uring_query_hdr {
        query_data: (&raw mut data) as u64,
        query_op: op,
        size: size_of::<T>() as u32,
        ..Default::default()
    };
    // SAFETY: a blind query (fd -1) reads one header, whose `next_entry`
    // is 0, and writes the result into it and at most `size` bytes into
    // `data`; both are locals that outlive the call, and the kernel keeps
    // no pointer.
    let res = unsafe { sys::io_uring_register(-1, sys::IORING_REGISTER_QUERY, (&raw mut hdr).cast::<c_void>(), 0) };
    match res {
        Ok(_) => Ok((hdr.result, data)),
        Err(e) => Err(e.raw_os_error().expect("an errno")),
    }
}

#[test]
fn support_probe_agrees_with_the_kernels_own_answers() {
    let r = ring(CqeSize::Big);
    let s = ZcrxSupport::probe(r.features());
    let (_, ops) = r.register().probe().expect("IORING_REGISTER_PROBE");
    let kernel_recv_zc = ops.contains(&(sys::IORING_OP_RECV_ZC as u8));
    assert_eq!(s.recv_zc(), kernel_recv_zc, "recv_zc() against IORING_REGISTER_PROBE");
    assert_eq!(s.kernel_release(), uring_core::kernel_release());

    let zcrx = raw_query::<sys::io_uring_query_zcrx>(sys::IO_URING_QUERY_ZCRX);
    let event = raw_query::<sys::io_uring_query_zcrx_event>(sys::IO_URING_QUERY_ZCRX_EVENT);
    println!(
        "kernel {}: RECV_ZC {kernel_recv_zc}; IO_URING_QUERY_ZCRX {}; IO_URING_QUERY_ZCRX_EVENT {}",
        s.kernel_release(),
        match &zcrx {
            Err(e) => format!("register call failed: {}", io::Error::from_raw_os_error(*e)),
            Ok((r, _)) if *r < 0 => format!("entry result {}", io::Error::from_raw_os_error(-r)),
            Ok((_, q)) => format!("{q:?}"),
        },
        match &event {
            Err(e) => format!("register call failed: {}", io::Error::from_raw_os_error(*e)),
            Ok((r, _)) if *r < 0 => format!("entry result {}", io::Error::from_raw_os_error(-r)),
            Ok((_, q)) => format!("{q:?}"),
        },
    );
    println!(
        "ZcrxSupport: recv_zc {} query {:?} query_errno {:?} nodev {} import {} flush {} export {} rx_buf_len {} \
         stats {} dmabuf {}",
        s.recv_zc(),
        s.query(),
        s.query_errno(),
        s.nodev(),
        s.import(),
        s.flush(),
        s.export(),
        s.rx_buf_len(),
        s.stats(),
        s.dmabuf()
    );

    match zcrx {
        Err(e) => {
            // No IORING_REGISTER_QUERY at all.
            assert_eq!(s.query(), None);
            assert_eq!(s.query_errno(), Some(e));
        }
        Ok((res, _)) if res < 0 => {
            // The query exists but has no zero-copy receive entry (6.18).
            assert_eq!(s.query(), None);
            assert_eq!(s.query_errno(), Some(-res));
            assert_eq!(-res, libc::EOPNOTSUPP, "an unknown query entry answers EOPNOTSUPP");
            assert!(s.recv_zc(), "a kernel with IORING_REGISTER_QUERY has RECV_ZC");
        }
        Ok((_, k)) => {
            let q = s.query().expect("the kernel answered, so the probe has the answer");
            assert_eq!(s.query_errno(), None);
            assert_eq!(q.register_flags, k.register_flags);
            assert_eq!(q.area_flags, k.area_flags);
            assert_eq!(q.nr_ctrl_opcodes, k.nr_ctrl_opcodes);
            assert_eq!(q.features, k.features);
            assert_eq!(q.rq_hdr_size, k.rq_hdr_size);
            assert_eq!(q.rq_hdr_alignment, k.rq_hdr_alignment);
            match event {
                Ok((0, ev)) => {
                    assert_eq!(q.event_types, ev.event_flags);
                    assert_eq!(q.stats_size, ev.stats_size);
                }
                _ => assert_eq!((q.event_types, q.stats_size), (0, 0), "no event query, no event answer"),
            }
            assert!(s.recv_zc(), "a kernel with the zero-copy receive query has RECV_ZC");
        }
    }
    // Each capability is exactly the kernel's bit.
    let bits = s.query().map_or(0, |q| q.register_flags);
    assert_eq!(s.nodev(), bits & u64::from(sys::ZCRX_REG_NODEV) != 0);
    assert_eq!(s.import(), bits & u64::from(sys::ZCRX_REG_IMPORT) != 0);
    let area = s.query().map_or(0, |q| q.area_flags);
    assert_eq!(s.dmabuf(), area & u64::from(sys::IORING_ZCRX_AREA_DMABUF) != 0);
    if s.query().is_none() {
        assert!(!s.nodev() && !s.import() && !s.flush() && !s.export() && !s.rx_buf_len() && !s.stats());
    }
}

// ---------------------------------------------------------------------------
// Ring requirements.

#[test]
fn a_ring_with_16_byte_cqes_is_refused_as_the_kernel_refuses_it() {
    let mut r = ring(CqeSize::Normal);
    assert!(!r.features().setup_flags().intersects(SetupFlags::CQE32 | SetupFlags::CQE_MIXED));
    let e = Zcrx::register(&mut r, &small(lo())).unwrap_err();
    assert!(matches!(e, Error::RingSetup(_)), "{e:?}");
    let text = e.to_string();
    assert!(text.contains("32-byte") && text.contains("CqeSize::Big"), "{text}");
    assert_eq!(io::Error::from(e).kind(), io::ErrorKind::InvalidInput);
    // The kernel: EINVAL here, where the same request on a fit ring gets
    // as far as the device.
    assert_eq!(raw_on(&mut r, lo_index(), 0, 64, 0).unwrap_err(), libc::EINVAL);
    let mut fit = ring(CqeSize::Big);
    let lo_idx = lo_index();
    assert_ne!(raw_on(&mut fit, lo_idx, 0, 64, 0).unwrap_err(), libc::EINVAL, "a fit ring passes the ring checks");
    println!("16-byte CQEs: Error::RingSetup: {text}");
}

#[test]
fn a_ring_without_defer_taskrun_is_refused_as_the_kernel_refuses_it() {
    let mut r = ring_with(Options::default().defer_taskrun(false).cqe_size(CqeSize::Big));
    let flags = r.features().setup_flags();
    assert!(flags.contains(SetupFlags::COOP_TASKRUN) && !flags.contains(SetupFlags::DEFER_TASKRUN), "{flags:?}");
    let e = Zcrx::register(&mut r, &small(lo())).unwrap_err();
    assert!(matches!(e, Error::RingSetup(_)), "{e:?}");
    let text = e.to_string();
    assert!(text.contains("DEFER_TASKRUN"), "{text}");
    assert_eq!(raw_on(&mut r, lo_index(), 0, 64, 0).unwrap_err(), libc::EINVAL);

    // A shared ring (several issuers, COOP_TASKRUN) cannot have it either.
    let mut shared = SharedRing::new(Options::default().entries(16).cqe_size(CqeSize::Big)).expect("SharedRing");
    shared.start().expect("start");
    let flags = shared.features().setup_flags();
    assert!(flags.contains(SetupFlags::COOP_TASKRUN) && !flags.contains(SetupFlags::DEFER_TASKRUN), "{flags:?}");
    let mut raw = RawReg::new(lo_index(), 0, 64, 0);
    let res = raw.register(&shared.register());
    if res.is_ok() {
        // Never expected; the memory must then outlive the ring.
        std::mem::forget(raw);
        panic!("the kernel registered zero-copy receive on a COOP_TASKRUN ring");
    }
    assert_eq!(res.as_ref().err().and_then(errno), Some(libc::EINVAL), "{res:?}");
    println!("no DEFER_TASKRUN: Error::RingSetup: {text}");
}

// ---------------------------------------------------------------------------
// Devices.

fn lo_index() -> u32 {
    match lo() {
        ZcrxTarget::Queue { ifindex, .. } => ifindex,
        t => panic!("{t:?}"),
    }
}

/// Checks a device error: EOPNOTSUPP, the device named, and the message
/// saying what the device lacks.
fn assert_not_capable(e: Error, name: &str, raw: i32) {
    let text = e.to_string();
    match &e {
        Error::Device { device, queue, why, source } => {
            assert!(device.starts_with(name), "{device}");
            assert_eq!(*queue, 0);
            assert_eq!(source.raw_os_error(), Some(libc::EOPNOTSUPP), "{e:?}");
            for missing in ["DMA-capable parent device", "queue management", "header split"] {
                assert!(why.contains(missing), "{why}");
            }
        }
        _ => panic!("{name}: expected Error::Device, got {e:?}"),
    }
    assert_eq!(e.raw_os_error(), Some(libc::EOPNOTSUPP));
    assert!(text.starts_with(name) && text.contains("RX queue 0"), "{text}");
    assert_eq!(raw, libc::EOPNOTSUPP, "the kernel's raw answer for {name}");
    println!("{name} queue 0: {text}");
}

#[test]
fn loopback_queue_0_is_a_device_error_saying_what_is_missing() {
    let mut r = ring(CqeSize::Big);
    let e = Zcrx::register(&mut r, &small(lo())).unwrap_err();
    let raw = raw_on(&mut r, lo_index(), 0, 64, 0).expect_err("loopback registered zero-copy receive");
    assert_not_capable(e, "lo", raw);
}

/// The first interface other than `lo` that has a parent device, and the
/// name of its driver.
fn first_nic() -> Option<(String, String)> {
    let mut names: Vec<String> = std::fs::read_dir("/sys/class/net")
        .ok()?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n != "lo")
        .collect();
    names.sort();
    names.into_iter().find_map(|n| {
        let dev = Path::new("/sys/class/net").join(&n).join("device");
        if !dev.exists() {
            return None;
        }
        let driver = std::fs::read_link(dev.join("driver"))
            .ok()
            .and_then(|p| p.file_name().map(|f| f.to_string_lossy().into_owned()))
            .unwrap_or_default();
        Some((n, driver))
    })
}

#[test]
fn the_virtio_nic_is_a_device_error_saying_what_is_missing() {
    let Some((name, driver)) = first_nic() else {
        println!(
            "SKIPPED the_virtio_nic_is_a_device_error_saying_what_is_missing: no interface other than lo has a device"
        );
        return;
    };
    if driver != "virtio_net" {
        println!(
            "SKIPPED the_virtio_nic_is_a_device_error_saying_what_is_missing: the first NIC, {name}, is driven by \
             {driver:?}, not virtio_net, and may be able to receive zero-copy"
        );
        return;
    }
    let target = ZcrxTarget::interface(&name, 0).expect("the NIC exists");
    let ZcrxTarget::Queue { ifindex, .. } = target else { unreachable!() };
    let mut r = ring(CqeSize::Big);
    let e = Zcrx::register(&mut r, &small(target)).unwrap_err();
    let raw = raw_on(&mut r, ifindex, 0, 64, 0).expect_err("virtio-net registered zero-copy receive");
    assert_not_capable(e, &name, raw);
}

#[test]
fn a_missing_interface_is_enodev_or_a_config_error() {
    let mut r = ring(CqeSize::Big);
    let e = Zcrx::register(&mut r, &small(ZcrxTarget::Queue { ifindex: NO_IFINDEX, queue: 0 })).unwrap_err();
    let text = e.to_string();
    match &e {
        Error::Device { device, queue: 0, why, source } => {
            assert_eq!(source.raw_os_error(), Some(libc::ENODEV));
            assert_eq!(device, &format!("interface #{NO_IFINDEX}"));
            assert!(why.contains("no interface with this index"), "{why}");
        }
        _ => panic!("expected Error::Device ENODEV, got {e:?}"),
    }
    assert_eq!(raw_on(&mut r, NO_IFINDEX, 0, 64, 0).unwrap_err(), libc::ENODEV, "the kernel's raw answer");
    println!("ifindex {NO_IFINDEX:#x}: {text}");

    let e = ZcrxTarget::interface("no-such-if0", 0).unwrap_err();
    assert!(matches!(&e, Error::Config(m) if m.contains("no-such-if0")), "{e:?}");
    let e = ZcrxTarget::interface("l\0o", 0).unwrap_err();
    assert!(matches!(e, Error::Config(_)), "{e:?}");
}

// ---------------------------------------------------------------------------
// No device.

#[test]
fn nodev_is_unsupported_where_the_kernel_lacks_it_and_registers_where_it_has_it() {
    let mut r = ring(CqeSize::Big);
    let s = ZcrxSupport::probe(r.features());
    let res = Zcrx::register(&mut r, &small(ZcrxTarget::NoDevice));
    if !s.nodev() {
        let e = res.unwrap_err();
        let text = e.to_string();
        match &e {
            Error::Unsupported { what, release, why } => {
                assert_eq!(*what, "ZCRX_REG_NODEV");
                assert_eq!(release, &uring_core::kernel_release());
                assert!(why.contains("7.2"), "{why}");
            }
            _ => panic!("expected Error::Unsupported, got {e:?}"),
        }
        assert_eq!(io::Error::from(e).kind(), io::ErrorKind::Unsupported);
        // The kernel's own answer to the flag it does not know.
        assert_eq!(raw_on(&mut r, 0, 0, 64, sys::ZCRX_REG_NODEV).unwrap_err(), libc::EINVAL);
        println!("NODEV on {}: {text}", s.kernel_release());
        return;
    }
    let zcrx = res.expect("Zcrx::register (NODEV)");
    assert!(zcrx.is_nodev());
    assert_eq!(zcrx.refill_entries(), 64);
    assert_eq!(zcrx.rx_buf_len() as usize, Mapping::page_size());
    assert_eq!(zcrx.area_len(), 256 << 10);
    // The same registration, raw: a second instance on the same ring,
    // with the refill layout the kernel announced.
    let out = raw_on(&mut r, 0, 0, 64, sys::ZCRX_REG_NODEV).expect("raw NODEV registration");
    assert_ne!(out.zcrx_id, zcrx.id());
    assert_eq!(out.rq_entries, 64);
    assert_eq!(out.rx_buf_len as usize, Mapping::page_size());
    let q = s.query().expect("NODEV is announced by the query");
    let rqes = q.rq_hdr_size.next_multiple_of(q.rq_hdr_alignment.max(1));
    assert_eq!(out.offsets.rqes, rqes);
    // One of the two known layouts: V1 where the query's header is 8
    // bytes (7.0, 7.2), V2 where it is two cache lines (7.3).
    let got = RefillOffsets { head: out.offsets.head, tail: out.offsets.tail, rqes: out.offsets.rqes };
    let want = if q.rq_hdr_size == 8 { RefillOffsets::V1 } else { RefillOffsets::V2 };
    assert_eq!(got, want, "the refill layout for rq_hdr_size {}", q.rq_hdr_size);
    assert!(out.offsets.rqes as usize + 64 * 16 <= out.region_len);
    assert_eq!(out.token & !sys::IORING_ZCRX_AREA_MASK, 0, "the token holds only area bits");
    assert_eq!(out.area_len, 64 << 10);
    println!("NODEV on {}: instance {} and raw instance {}, {out:?}", s.kernel_release(), zcrx.id(), out.zcrx_id);
}

// ---------------------------------------------------------------------------
// Configuration.

#[test]
fn bad_configurations_are_config_errors_before_the_kernel_is_asked() {
    let page = Mapping::page_size();
    let bad: Vec<(&str, ZcrxConfig, bool)> = vec![
        ("refill_entries 0", small(lo()).refill_entries(0), true),
        ("refill_entries 3", small(lo()).refill_entries(3), true),
        ("refill_entries 65536", small(lo()).refill_entries(65536), true),
        ("area_len 0", small(lo()).area_len(0), true),
        ("area_len not a page multiple", small(lo()).area_len(page * 4 + 100), true),
        ("rx_buf_len 1000", small(lo()).rx_buf_len(1000), true),
        ("rx_buf_len 2048", small(lo()).rx_buf_len(2048), true),
        ("NODEV with rx_buf_len 8192", small(ZcrxTarget::NoDevice).rx_buf_len(8192), true),
        ("queue u32::MAX", small(ZcrxTarget::Queue { ifindex: lo_index(), queue: u32::MAX }), false),
    ];
    for (what, cfg, by_validate) in bad {
        if by_validate {
            let e = cfg.validate().unwrap_err();
            assert!(matches!(e, Error::Config(_)), "{what}: validate gave {e:?}");
        }
        // A valid lo configuration reaches the kernel (EOPNOTSUPP); these
        // stop at the configuration.
        let mut r = ring(CqeSize::Big);
        let e = Zcrx::register(&mut r, &cfg).unwrap_err();
        assert!(matches!(e, Error::Config(_)), "{what}: register gave {e:?}");
        assert_eq!(e.raw_os_error(), None);
        assert_eq!(io::Error::from(e).kind(), io::ErrorKind::InvalidInput);
    }
    let mut r = ring(CqeSize::Big);
    small(lo()).validate().expect("the baseline is valid");
    assert!(matches!(Zcrx::register(&mut r, &small(lo())), Err(Error::Device { .. })));
    // What the kernel would have said to two of them.
    assert_eq!(raw_on(&mut r, lo_index(), u32::MAX, 64, 0).unwrap_err(), libc::EINVAL, "queue -1");
    assert_eq!(raw_on(&mut r, lo_index(), 0, 0, 0).unwrap_err(), libc::EINVAL, "0 refill entries");
}

// ---------------------------------------------------------------------------
// Permission.

/// The child's part: without CAP_NET_ADMIN, registration is
/// `Error::Permission`, as the kernel's EPERM.
fn permission_child() {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let cap = |key: &str| {
        let line = status.lines().find(|l| l.starts_with(key)).unwrap_or_else(|| panic!("no {key}"));
        u64::from_str_radix(line[key.len()..].trim(), 16).expect("hex capability mask")
    };
    assert_eq!(cap("CapEff:") & (1 << CAP_NET_ADMIN), 0, "the child still has CAP_NET_ADMIN:\n{status}");
    let mut r = ring(CqeSize::Big);
    let e = Zcrx::register(&mut r, &small(lo())).unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, Error::Permission), "{e:?}");
    assert!(text.contains("CAP_NET_ADMIN") && text.contains("EPERM"), "{text}");
    assert_eq!(e.raw_os_error(), Some(libc::EPERM));
    assert_eq!(io::Error::from(e).kind(), io::ErrorKind::PermissionDenied);
    assert_eq!(raw_on(&mut r, lo_index(), 0, 64, 0).unwrap_err(), libc::EPERM, "the kernel's raw answer");
    println!("CHILD OK: {text}");
}

#[test]
fn registration_without_cap_net_admin_is_a_permission_error() {
    const NAME: &str = "registration_without_cap_net_admin_is_a_permission_error";
    if std::env::var(CHILD_ENV).as_deref() == Ok(NAME) {
        return permission_child();
    }
    let exe = std::env::current_exe().expect("current_exe");
    let setpriv = Path::new("/usr/bin/setpriv");
    let (mut cmd, how) = if setpriv.exists() {
        let mut c = Command::new(setpriv);
        c.args(["--inh-caps=-net_admin", "--bounding-set=-net_admin"]).arg(&exe);
        (c, "setpriv --inh-caps=-net_admin --bounding-set=-net_admin")
    } else {
        // No util-linux setpriv (the VM's busybox one cannot change the
        // bounding set): do what its --bounding-set does, in the child
        // between fork and exec.
        let mut c = Command::new(&exe);
        let drop_net_admin = || -> io::Result<()> {
            // SAFETY: prctl with integer arguments only.
            if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, CAP_NET_ADMIN as libc::c_ulong, 0, 0, 0) } != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        };
        // SAFETY: the closure runs in the forked child before exec and
        // only calls prctl, which is async-signal-safe and touches no
        // memory of the parent.
        unsafe { std::os::unix::process::CommandExt::pre_exec(&mut c, drop_net_admin) };
        (c, "PR_CAPBSET_DROP before exec (no /usr/bin/setpriv)")
    };
    let out = cmd
        .args(["--exact", NAME, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, NAME)
        .output()
        .expect("run the child");
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && all.contains("CHILD OK"), "child ({how}) failed:\n{all}");
    let line = all.lines().find(|l| l.contains("CHILD OK")).unwrap_or_default();
    println!("without CAP_NET_ADMIN ({how}): {line}");
}
