//! Multishot subscriptions against the kernel: routing, the single
//! `on_stop`, running out of buffers and resubscribing, cancellation
//! racing completion.

mod common;

use std::cell::RefCell;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use uring_core::CqeSlot;
use uring_ops::multishot::RecvMulti;
use uring_ops::prelude::*;
use uring_ops::subscription::{
    MultishotAction, MultishotEnd, MultishotHandler, MultishotStep, MultishotSubscriber, Subscribe, Subscription,
    subscription_id,
};

use common::BufRing;

/// Waits (5 s limit) for completions and routes every one through `sub`;
/// a CQE it does not claim fails the test.
fn pump(ring: &mut Ring, sub: &mut dyn HandleCqe<Event = ()>) {
    let mut slots = [CqeSlot::EMPTY; 64];
    let n = match ring.wait_for(&mut slots, 1, Some(Duration::from_secs(5))) {
        Ok(r) => r.len(),
        Err(Error::WouldBlock) => panic!("no completion within 5 s"),
        Err(e) => panic!("wait_for: {e}"),
    };
    for slot in &slots[..n] {
        let cqe = slot.cqe();
        assert!(sub.handle_cqe(ring, &cqe).is_some(), "unclaimed completion {cqe:?}");
    }
}

/// Pumps until `done` says so (10 s overall limit).
fn pump_until<H: MultishotHandler>(
    ring: &mut Ring,
    sub: &mut Subscription<H>,
    mut done: impl FnMut(&Subscription<H>) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done(sub) {
        assert!(Instant::now() < deadline, "gave up waiting: {sub:?}");
        pump(ring, sub);
    }
}

/// What a handler saw, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    Step { res: i32, bid: Option<u16>, last: bool, stopping: bool },
    Stop(MultishotEnd),
}

/// A handler recording every call and, for receives, the bytes of each
/// buffer (copied out at once) and the buffers to recycle.
struct Recorder {
    log: Rc<RefCell<Vec<Event>>>,
    bufs: Rc<RefCell<BufRing>>,
    data: Rc<RefCell<Vec<u8>>>,
    recycle: Rc<RefCell<Vec<u16>>>,
    stop_at: Option<usize>,
    steps: usize,
}

impl MultishotHandler for Recorder {
    fn on_step(&mut self, step: &MultishotStep) -> MultishotAction {
        self.steps += 1;
        self.log.borrow_mut().push(Event::Step {
            res: step.res(),
            bid: step.buffer_id(),
            last: step.is_final(),
            stopping: step.stopping(),
        });
        if let Some(bid) = step.buffer_id() {
            let bytes = self.bufs.borrow().bytes(bid, step.res() as usize);
            self.data.borrow_mut().extend(bytes);
            self.recycle.borrow_mut().push(bid);
        }
        if self.stop_at == Some(self.steps) { MultishotAction::Stop } else { MultishotAction::Continue }
    }

    fn on_stop(&mut self, end: MultishotEnd) {
        self.log.borrow_mut().push(Event::Stop(end));
    }
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

#[test]
fn recv_stream_out_of_buffers_resubscribes_without_losing_a_byte() {
    let mut ring = common::ring(16);
    let bufs = Rc::new(RefCell::new(BufRing::register(&ring, 5, 4, 256)));
    let group = bufs.borrow().group;
    let (mut client, server) = common::tcp_pair();
    let sent = pattern(8 * 1024);
    // Everything is queued in the socket before the first receive, then
    // the peer closes: four buffers cannot hold it, so streams end with
    // -ENOBUFS until the data is drained, and finally with EOF.
    client.write_all(&sent).unwrap();
    drop(client);

    let log = Rc::new(RefCell::new(Vec::new()));
    let data = Rc::new(RefCell::new(Vec::new()));
    let recycle = Rc::new(RefCell::new(Vec::new()));
    let handler = Recorder {
        log: log.clone(),
        bufs: bufs.clone(),
        data: data.clone(),
        recycle: recycle.clone(),
        stop_at: None,
        steps: 0,
    };
    let mut sub = ring.subscribe_recv(server.as_raw_fd(), group, handler).unwrap();
    let mut out_of_buffers = 0;
    let mut ids = vec![sub.id()];
    loop {
        pump_until(&mut ring, &mut sub, Subscription::is_ended);
        match sub.end().unwrap() {
            MultishotEnd::NoBuffers => {
                out_of_buffers += 1;
                let mut b = bufs.borrow_mut();
                for bid in recycle.borrow_mut().drain(..) {
                    b.push(bid);
                }
                b.publish();
                drop(b);
                sub.resubscribe(&mut ring, RecvMulti::new(server.as_raw_fd(), group)).unwrap();
                ids.push(sub.id());
            }
            MultishotEnd::Finished(0) => break,
            other => panic!("unexpected end {other:?}; log {:?}", log.borrow()),
        }
    }
    assert_eq!(*data.borrow(), sent, "every byte exactly once, in order");
    assert!(out_of_buffers >= 2, "the stream ran dry {out_of_buffers} times");
    // One on_stop per stream, each right after that stream's final step.
    let log = log.borrow();
    let stops: Vec<_> = log.iter().enumerate().filter(|(_, e)| matches!(e, Event::Stop(_))).collect();
    assert_eq!(stops.len(), out_of_buffers + 1);
    for (i, _) in &stops {
        assert!(matches!(log[i - 1], Event::Step { last: true, .. }), "on_stop follows the final step: {log:?}");
    }
    ids.dedup();
    assert_eq!(ids.len(), out_of_buffers + 1, "each resubscription gets a new token");
}

/// Cancels while data is arriving, at a different point each round, by
/// `on_step` returning Stop or by `Subscription::cancel`; the sender closes
/// at about the same time, so cancel and the natural end race.
#[test]
fn cancel_racing_completion_stops_exactly_once() {
    let (mut cancelled, mut natural) = (0, 0);
    for round in 0..24usize {
        let mut ring = common::ring(16);
        let bufs = Rc::new(RefCell::new(BufRing::register(&ring, 6, 64, 512)));
        let group = bufs.borrow().group;
        let (mut client, server) = common::tcp_pair();
        let by_handler = round % 2 == 0;
        let stop_after = 1 + round / 2 % 6;
        // About as many paced chunks as steps before the stop, so the
        // sender's close (a natural end) and the cancel race.
        let n_chunks = (stop_after + round % 3).saturating_sub(1).max(1);
        let sent = pattern(n_chunks * 512);
        let chunks = sent.clone();
        let sender = std::thread::spawn(move || {
            for c in chunks.chunks(512) {
                if client.write_all(c).is_err() {
                    break;
                }
                // Pacing only (so data keeps arriving), not a measurement.
                std::thread::sleep(Duration::from_micros(200));
            }
        });
        let log = Rc::new(RefCell::new(Vec::new()));
        let data = Rc::new(RefCell::new(Vec::new()));
        let recycle = Rc::new(RefCell::new(Vec::new()));
        let handler = Recorder {
            log: log.clone(),
            bufs: bufs.clone(),
            data: data.clone(),
            recycle: recycle.clone(),
            stop_at: by_handler.then_some(stop_after),
            steps: 0,
        };
        let mut sub = ring.subscribe_recv(server.as_raw_fd(), group, handler).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !sub.is_finished() {
            assert!(Instant::now() < deadline, "round {round}: gave up: {sub:?}");
            pump(&mut ring, &mut sub);
            if !by_handler && sub.steps() as usize >= stop_after {
                sub.cancel(&mut ring).unwrap();
            }
            let mut b = bufs.borrow_mut();
            for bid in recycle.borrow_mut().drain(..) {
                b.push(bid);
            }
            b.publish();
        }
        sender.join().unwrap();
        // Nothing of this subscription is left in flight.
        common::expect_none(&mut ring, Duration::from_millis(20));

        let log = log.borrow();
        let stops: Vec<_> =
            log.iter().filter_map(|e| if let Event::Stop(end) = e { Some(*end) } else { None }).collect();
        assert_eq!(stops.len(), 1, "round {round}: on_stop ran {} times: {log:?}", stops.len());
        assert!(matches!(log.last(), Some(Event::Stop(_))), "round {round}: a step after on_stop: {log:?}");
        match stops[0] {
            MultishotEnd::Cancelled => {
                assert!(stops[0].cancelled());
                cancelled += 1;
            }
            MultishotEnd::Finished(_) => natural += 1,
            other => panic!("round {round}: neither cancelled nor a natural end: {other:?}"),
        }
        // After the stop request every step is flagged as stopping.
        let first_stopping = log.iter().position(|e| matches!(e, Event::Step { stopping: true, .. }));
        if let Some(i) = first_stopping {
            assert!(log[i..].iter().all(|e| matches!(e, Event::Step { stopping: true, .. } | Event::Stop(_))));
        }
        // What arrived is a prefix of what was sent: nothing lost or doubled.
        let data = data.borrow();
        assert_eq!(&sent[..data.len()], &data[..], "round {round}");
    }
    eprintln!("cancel_racing_completion: {cancelled} rounds cancelled, {natural} ended naturally");
}

#[test]
fn unsubscribe_silences_the_handler_but_claims_the_cqes() {
    let mut ring = common::ring(8);
    let bufs = BufRing::register(&ring, 7, 4, 64);
    let (_client, server) = common::tcp_pair();
    let calls = Rc::new(RefCell::new(0));
    let (c1, c2) = (calls.clone(), calls.clone());
    let handler = MultishotSubscriber::new()
        .on_step(move |_| {
            *c1.borrow_mut() += 1;
            MultishotAction::Continue
        })
        .on_stop(move |_| *c2.borrow_mut() += 1);
    let mut sub = ring.subscribe(RecvMulti::new(server.as_raw_fd(), bufs.group), handler).unwrap();
    ring.submit().unwrap();
    sub.unsubscribe(&mut ring).unwrap();
    assert!(sub.is_stopping());
    pump_until(&mut ring, &mut sub, Subscription::is_finished);
    assert_eq!(sub.end(), Some(MultishotEnd::Cancelled), "the idle receive was cancelled");
    assert_eq!(*calls.borrow(), 0, "no callback after unsubscribe");
}

#[test]
fn a_failing_stream_reports_its_errno_once() {
    let mut ring = common::ring(8);
    let bufs = BufRing::register(&ring, 8, 2, 64);
    let steps = Rc::new(RefCell::new(Vec::new()));
    let ends = Rc::new(RefCell::new(Vec::new()));
    let (s, e) = (steps.clone(), ends.clone());
    let handler = MultishotSubscriber::new()
        .on_step(move |step| {
            s.borrow_mut().push((step.errno(), step.cancelled(), step.is_final()));
            MultishotAction::Continue
        })
        .on_stop(move |end| e.borrow_mut().push((end, end.error().and_then(|e| e.raw_os_error()), end.cancelled())));
    let mut sub = ring.subscribe_recv(1_000_000, bufs.group, handler).unwrap();
    pump_until(&mut ring, &mut sub, Subscription::is_finished);
    assert_eq!(*steps.borrow(), vec![(Some(libc::EBADF), false, true)]);
    assert_eq!(*ends.borrow(), vec![(MultishotEnd::Failed(libc::EBADF), Some(libc::EBADF), false)]);
}

#[test]
fn misuse_is_refused_by_name() {
    let mut ring = common::ring(8);
    let mut other = common::ring(8);
    let bufs = BufRing::register(&ring, 9, 2, 64);
    let (_client, server) = common::tcp_pair();
    let mut sub = ring.subscribe_recv(server.as_raw_fd(), bufs.group, MultishotSubscriber::new()).unwrap();
    let err = sub.cancel(&mut other).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    let err = sub.resubscribe(&mut ring, RecvMulti::new(server.as_raw_fd(), bufs.group)).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "a running stream cannot be resubscribed: {err}");
    // A bad operation is refused before anything is queued.
    let err =
        ring.subscribe(RecvMulti::new(0, 1).msg_flags(libc::MSG_WAITALL), MultishotSubscriber::new()).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    // Completions of other submissions are not claimed.
    ring.push_op(SqeContext::token(5).unwrap(), uring_ops::cmd::Nop::new()).unwrap();
    let mut slots = [CqeSlot::EMPTY; 4];
    let n = ring.wait_for(&mut slots, 1, Some(Duration::from_secs(5))).unwrap().len();
    assert_eq!(n, 1);
    assert!(sub.handle_cqe(&mut ring, &slots[0].cqe()).is_none());
    assert_eq!(subscription_id(slots[0].cqe().user_data()), None);
    assert_eq!(subscription_id(sub.token().raw()), Some(sub.id()));
    sub.cancel(&mut ring).unwrap();
    pump_until(&mut ring, &mut sub, Subscription::is_finished);
    assert_eq!(sub.end(), Some(MultishotEnd::Cancelled));
}

#[test]
fn multishot_accept_through_a_subscription() {
    let mut ring = common::ring(16);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Rc::new(RefCell::new(Vec::new()));
    let a = accepted.clone();
    let handler = MultishotSubscriber::new().on_step(move |step| {
        // The final CQE reaches on_step too: here the -ECANCELED that the
        // Stop below causes.
        let Ok(fd) = step.result() else {
            assert!(step.is_final() && step.cancelled() && step.stopping(), "{step:?}");
            return MultishotAction::Continue;
        };
        // SAFETY: the kernel just created this descriptor for us.
        a.borrow_mut().push(unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd as i32) });
        if a.borrow().len() == 3 { MultishotAction::Stop } else { MultishotAction::Continue }
    });
    let mut sub = ring.subscribe_accept(listener.as_raw_fd(), handler).unwrap();
    ring.submit().unwrap();
    let clients: Vec<_> = (0..3).map(|_| std::net::TcpStream::connect(addr).unwrap()).collect();
    pump_until(&mut ring, &mut sub, Subscription::is_finished);
    assert_eq!(accepted.borrow().len(), 3);
    assert_eq!(sub.end(), Some(MultishotEnd::Cancelled), "Stop from on_step cancelled the accept");
    // The accepted sockets are the peers of the clients.
    let mut peers: Vec<_> = accepted
        .borrow()
        .iter()
        .map(|fd| std::net::TcpStream::from(fd.try_clone().unwrap()).peer_addr().unwrap())
        .collect();
    let mut locals: Vec<_> = clients.iter().map(|c| c.local_addr().unwrap()).collect();
    peers.sort();
    locals.sort();
    assert_eq!(peers, locals);
}

#[test]
fn stopping_a_multishot_timeout_whose_expiry_waits_in_task_work_is_not_lost() {
    use uring_ops::timeout::Timeout;
    // On a DEFER_TASKRUN ring an expiry of a multishot timeout takes the
    // timer off the kernel's list until the issuer runs its task work; a
    // cancel submitted in between finds nothing (-ENOENT) while the timer
    // stays armed. The subscription must ask again, not give up.
    let mut ring = common::ring(8);
    let steps = Rc::new(RefCell::new(0u32));
    let s2 = steps.clone();
    let handler = MultishotSubscriber::new().on_step(move |_| {
        *s2.borrow_mut() += 1;
        MultishotAction::Continue
    });
    let mut sub = ring.subscribe(Timeout::new(Duration::from_millis(1)).multishot(0), handler).unwrap();
    ring.submit().unwrap();
    // Let it expire with nobody running task work.
    std::thread::sleep(Duration::from_millis(20));
    sub.cancel(&mut ring).unwrap();
    ring.submit().unwrap();
    pump_until(&mut ring, &mut sub, Subscription::is_finished);
    assert_eq!(sub.end(), Some(MultishotEnd::Cancelled), "{sub:?}");
    assert!(*steps.borrow() >= 1, "the expiry that raced the cancel was delivered");
    common::expect_none(&mut ring, Duration::from_millis(30));
}
