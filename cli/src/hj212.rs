//! HJ 212 TCP session server for dust/noise monitors (DOMAIN.md §3, §11.5), shared by
//! `smartsite serve --hj212` and `smartsite gateway hj212`.
//!
//! Devices keep one long-lived connection and resend unacknowledged data, so the server does not
//! drop a connection over a bad frame: it reports the frame and carries on. A 9014 ack is
//! sent only once the sink has durably accepted the data, which makes the device's resend the
//! retry mechanism when storage fails.
//!
//! What a peer can cost is bounded ([`Hj212Limits`]): connections in total and per source
//! address (refused at accept), an idle timeout, at most one frame's worth of buffered bytes —
//! a peer that sends more without a frame ending is quarantined once as `frame_too_long` and
//! dropped — and a budget of refusals per connection ([`REJECT_BURST`], refilled one per
//! [`REJECT_REFILL`]), since every refusal is a durable quarantine record: a peer that spends
//! it is quarantined once more as `too_many_rejects` and dropped, instead of writing a record
//! per dozen bytes it sends.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use smartsite_shared::domain::hj212::{
    self, Frame, Hj212Error, Kind, RawFrame, Rejected, Splitter,
};
use smartsite_shared::telemetry::Untrusted;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{debug, error, info, warn};

use crate::limits::{ConnCaps, Hj212Limits};

/// Refusals one connection may have quarantined in a row before the budget must refill. A
/// device whose every frame is refused (an unsupported CN, an unknown factor) sends a few a
/// minute; a replay after an outage is a burst of tens.
pub const REJECT_BURST: u32 = 60;
/// One refusal of the budget comes back per this much time: 6 a minute, above what a real
/// device's steady refusals need.
pub const REJECT_REFILL: Duration = Duration::from_secs(10);
/// A peer that does not read its acks must not pin a task forever.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long shutdown waits for sessions to finish the frame in hand before aborting them.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause after a failed accept (e.g. out of file descriptors) so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Read granularity; frames are at most ~1 KiB.
const READ_CHUNK: usize = 4096;

/// Where decoded HJ 212 traffic goes (the store in `serve`, the cloud in `gateway`).
#[async_trait::async_trait]
pub trait Hj212Sink: Send + Sync + 'static {
    /// A decoded data frame (CN 2011) as the telemetry JSON object, for the device whose MN matches.
    /// Ok(()) once durably accepted; the server then sends the 9014 ack if the frame asks for one.
    /// Per-factor flags other than `N` are in `hj212::telemetry(frame)?.flags`.
    async fn data(
        &self,
        peer: SocketAddr,
        frame: &Frame,
        telemetry: Map<String, Value>,
    ) -> Result<(), String>;
    /// Liveness (9015 heartbeat or any valid frame) for an MN. Frames delivered through `data`
    /// are not repeated here: the data itself proves liveness.
    async fn heartbeat(&self, peer: SocketAddr, mn: &str);
    /// A rejected frame or fragment with its reason code and detail, the MN when known.
    async fn reject(
        &self,
        peer: SocketAddr,
        mn: Option<&str>,
        raw: &[u8],
        reason: &str,
        detail: &str,
    );
}

/// Accepts HJ 212 connections until `shutdown` completes, then stops accepting, lets each
/// session finish the frame in hand (bounded by a few seconds) and closes them. Accept
/// errors are logged and retried, since one failing accept must not end ingestion.
pub async fn serve(
    listener: TcpListener,
    sink: Arc<dyn Hj212Sink>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    limits: &Hj212Limits,
) -> io::Result<()> {
    let caps = ConnCaps::new(
        "hj212",
        limits.max_connections,
        limits.max_connections_per_addr,
    );
    run(listener, sink, shutdown, limits.idle_timeout(), caps).await
}

async fn run(
    listener: TcpListener,
    sink: Arc<dyn Hj212Sink>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    idle: Duration,
    caps: Arc<ConnCaps>,
) -> io::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(());
    let mut sessions = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    if let Ok(addr) = listener.local_addr() {
        info!(%addr, "HJ 212 listener accepting");
    }
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    // Beyond a cap the stream is dropped here, which closes it.
                    let Some(permit) = caps.admit(peer) else { continue };
                    debug!(%peer, "HJ 212 connection opened");
                    let session = session(stream, peer, Arc::clone(&sink), idle, stop_rx.clone());
                    sessions.spawn(async move {
                        session.await;
                        drop(permit);
                    });
                }
                Err(e) => {
                    warn!(error = %e, "HJ 212 accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            Some(done) = sessions.join_next(), if !sessions.is_empty() => {
                if let Err(e) = done
                    && e.is_panic()
                {
                    error!(error = %e, "HJ 212 session panicked");
                }
            }
        }
    }
    drop(listener);
    // Sessions wait on `changed()`; sending wakes them all.
    let _ = stop_tx.send(());
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while sessions.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        warn!(
            sessions = sessions.len(),
            "HJ 212 sessions did not finish in time; aborting them"
        );
        sessions.shutdown().await;
    }
    info!("HJ 212 listener stopped");
    Ok(())
}

/// Per-connection state.
struct Session {
    peer: SocketAddr,
    sink: Arc<dyn Hj212Sink>,
    /// The non-standard-MN warning is logged once per connection, not once per frame.
    warned_mn: bool,
    rejects: RejectBudget,
}

/// Why a session ends early.
enum Close {
    /// An ack could not be written: the socket is gone.
    Write(io::Error),
    /// The peer was refused in a way that ends the connection (quarantined already).
    Refused(&'static str),
}

/// The refusals a connection may still have quarantined: a token bucket of [`REJECT_BURST`]
/// refilled one per [`REJECT_REFILL`].
struct RejectBudget {
    tokens: u32,
    since: Instant,
}

impl RejectBudget {
    fn new(now: Instant) -> RejectBudget {
        RejectBudget {
            tokens: REJECT_BURST,
            since: now,
        }
    }

    /// Takes one refusal from the budget at `now`; false once it is spent.
    fn take(&mut self, now: Instant) -> bool {
        let refills = now.saturating_duration_since(self.since).as_secs() / REJECT_REFILL.as_secs();
        if refills > 0 {
            let refills = u32::try_from(refills).unwrap_or(u32::MAX);
            self.tokens = self.tokens.saturating_add(refills).min(REJECT_BURST);
            self.since += REJECT_REFILL * refills;
        }
        match self.tokens.checked_sub(1) {
            Some(left) => {
                self.tokens = left;
                true
            }
            None => false,
        }
    }
}

async fn session(
    mut stream: TcpStream,
    peer: SocketAddr,
    sink: Arc<dyn Hj212Sink>,
    idle: Duration,
    mut stop: watch::Receiver<()>,
) {
    // Acks are tiny and the device waits for them; do not hold them back for coalescing.
    let _ = stream.set_nodelay(true);
    let mut state = Session {
        peer,
        sink,
        warned_mn: false,
        rejects: RejectBudget::new(Instant::now()),
    };
    let mut splitter = Splitter::new();
    // Renewed by whole frames (and refusals, which the budget limits), not by single bytes: a
    // peer trickling a byte now and then is as idle as a silent one.
    let mut deadline = tokio::time::Instant::now() + idle;
    'connection: loop {
        while let Some(item) = splitter.next_item() {
            deadline = tokio::time::Instant::now() + idle;
            match state.handle(&mut stream, item).await {
                Ok(()) => {}
                Err(Close::Write(e)) => {
                    debug!(%peer, error = %e, "HJ 212 ack write failed; closing");
                    return;
                }
                Err(Close::Refused(reason)) => {
                    info!(%peer, reason, "HJ 212 peer refused; closing the connection");
                    break 'connection;
                }
            }
        }
        // At most one frame is buffered (the splitter refuses more), so this stays small.
        let buf = splitter.buffer_mut();
        buf.reserve(READ_CHUNK);
        tokio::select! {
            _ = stop.changed() => break,
            read = tokio::time::timeout_at(deadline, stream.read_buf(buf)) => match read {
                Ok(Ok(0)) => {
                    if let Some(rest) = splitter.finish() {
                        let _ = state.rejected(rest).await;
                    }
                    debug!(%peer, "HJ 212 connection closed by peer");
                    return;
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    debug!(%peer, error = %e, "HJ 212 read failed; closing");
                    return;
                }
                Err(_) => {
                    if let Some(rest) = splitter.finish() {
                        let _ = state.rejected(rest).await;
                    }
                    info!(%peer, idle_secs = idle.as_secs(), "HJ 212 connection idle; closing");
                    break;
                }
            },
        }
    }
    let _ = stream.shutdown().await;
}

impl Session {
    /// Handles one splitter item. A failed ack write ends the session (the socket is gone), and
    /// so does a refusal that ends the connection.
    async fn handle(
        &mut self,
        stream: &mut TcpStream,
        item: Result<RawFrame, Rejected>,
    ) -> Result<(), Close> {
        match item {
            Err(rejected) => self.rejected(rejected).await,
            Ok(raw) => self.frame(stream, &raw).await,
        }
    }

    async fn frame(&mut self, stream: &mut TcpStream, raw: &RawFrame) -> Result<(), Close> {
        let peer = self.peer;
        let frame = match hj212::decode(raw) {
            Ok(frame) => frame,
            Err(e) => {
                let mn = hj212::sniff_mn(raw.segment());
                return self.reject(mn.as_deref(), raw.as_bytes(), &e).await;
            }
        };
        if !frame.mn_standard && !self.warned_mn {
            warn!(%peer, mn = %Untrusted(&frame.mn), "HJ 212 MN is not 24 characters of 0-9/A-F; accepting it");
            self.warned_mn = true;
        }
        let telemetry = match hj212::classify(&frame) {
            Ok(Kind::Heartbeat) => {
                self.sink.heartbeat(peer, &frame.mn).await;
                return self.ack(stream, &frame).await;
            }
            Ok(Kind::Data) => hj212::telemetry(&frame),
            Err(e) => Err(e),
        };
        let telemetry = match telemetry {
            Ok(telemetry) => telemetry,
            Err(e) => {
                // The frame was well-formed, so the device is alive even if its content is refused.
                self.sink.heartbeat(peer, &frame.mn).await;
                return self.reject(Some(&frame.mn), raw.as_bytes(), &e).await;
            }
        };
        for flag in &telemetry.flags {
            debug!(%peer, mn = %Untrusted(&frame.mn), field = flag.field, flag = %Untrusted(&flag.flag), "HJ 212 factor not normal");
        }
        match self.sink.data(peer, &frame, telemetry.values).await {
            Ok(()) => self.ack(stream, &frame).await,
            Err(e) => {
                // No ack: the device resends, which retries the store.
                warn!(%peer, mn = %Untrusted(&frame.mn), error = %Untrusted(&e), "HJ 212 data not accepted; not acknowledging");
                Ok(())
            }
        }
    }

    /// Sends the 9014 reply when the frame's A bit asks for one.
    async fn ack(&self, stream: &mut TcpStream, frame: &Frame) -> Result<(), Close> {
        if !frame.needs_ack {
            return Ok(());
        }
        let reply = hj212::data_ack(frame);
        match tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(&reply)).await {
            Ok(result) => result.map_err(Close::Write),
            Err(_) => Err(Close::Write(io::Error::new(
                io::ErrorKind::TimedOut,
                "ack write timed out",
            ))),
        }
    }

    async fn rejected(&mut self, rejected: Rejected) -> Result<(), Close> {
        let mn = match rejected.error.reason {
            hj212::Reason::Garbage | hj212::Reason::FrameTooLong => None,
            _ => hj212::sniff_mn(&rejected.raw),
        };
        self.reject(mn.as_deref(), &rejected.raw, &rejected.error)
            .await
    }

    /// Quarantines a refusal through the sink, if the connection's budget allows; the refusal
    /// that finds the budget spent is quarantined as `too_many_rejects` instead, and ends the
    /// connection, as does a refusal whose reason ends it by itself.
    async fn reject(
        &mut self,
        mn: Option<&str>,
        raw: &[u8],
        error: &Hj212Error,
    ) -> Result<(), Close> {
        let over_budget;
        let error = if self.rejects.take(Instant::now()) {
            error
        } else {
            over_budget = Hj212Error {
                reason: hj212::Reason::TooManyRejects,
                detail: format!(
                    "more than {REJECT_BURST} refused frames from this connection, faster than one per {} s; \
                     this one was refused as {}: {}",
                    REJECT_REFILL.as_secs(),
                    error.reason.code(),
                    error.detail
                ),
            };
            &over_budget
        };
        let reason = error.reason.code();
        debug!(peer = %self.peer, mn = mn.map(|m| tracing::field::display(Untrusted(m))), reason, detail = %Untrusted(&error.detail), "HJ 212 frame rejected");
        self.sink
            .reject(self.peer, mn, raw, reason, &error.detail)
            .await;
        if error.reason.ends_connection() {
            return Err(Close::Refused(reason));
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering};
    use tokio::sync::oneshot;

    const MN: &str = "0A1B2C3D4E5F607182930A1B";

    #[derive(Debug, Clone, PartialEq)]
    enum Event {
        Data {
            mn: String,
            telemetry: Map<String, Value>,
        },
        Heartbeat(String),
        Reject {
            mn: Option<String>,
            reason: String,
        },
    }

    #[derive(Default)]
    struct MemorySink {
        events: Mutex<Vec<Event>>,
        fail_data: AtomicBool,
    }

    impl MemorySink {
        fn events(&self) -> Vec<Event> {
            self.events.lock().unwrap().clone()
        }
    }

    #[async_trait::async_trait]
    impl Hj212Sink for MemorySink {
        async fn data(
            &self,
            _peer: SocketAddr,
            frame: &Frame,
            telemetry: Map<String, Value>,
        ) -> Result<(), String> {
            if self.fail_data.load(Ordering::SeqCst) {
                return Err("store unavailable".to_owned());
            }
            self.events.lock().unwrap().push(Event::Data {
                mn: frame.mn.clone(),
                telemetry,
            });
            Ok(())
        }

        async fn heartbeat(&self, _peer: SocketAddr, mn: &str) {
            self.events
                .lock()
                .unwrap()
                .push(Event::Heartbeat(mn.to_owned()));
        }

        async fn reject(
            &self,
            _peer: SocketAddr,
            mn: Option<&str>,
            _raw: &[u8],
            reason: &str,
            _detail: &str,
        ) {
            self.events.lock().unwrap().push(Event::Reject {
                mn: mn.map(str::to_owned),
                reason: reason.to_owned(),
            });
        }
    }

    fn data_frame(qn: &str, flag: u8) -> Vec<u8> {
        hj212::encode(&format!(
            "QN={qn};ST=39;CN=2011;PW=123456;MN={MN};Flag={flag};CP=&&DataTime=20240501100000;\
             a34002-Rtd=80,a34002-Flag=N;a34004-Rtd=35.2,a34004-Flag=N;LA-Rtd=62.3,LA-Flag=N&&"
        ))
    }

    struct Harness {
        addr: SocketAddr,
        sink: Arc<MemorySink>,
        client: TcpStream,
        stop: oneshot::Sender<()>,
        server: tokio::task::JoinHandle<io::Result<()>>,
        replies: Splitter,
    }

    const IDLE_TIMEOUT: Duration = Duration::from_secs(600);

    async fn start(idle: Duration) -> Harness {
        start_with(idle, ConnCaps::new("hj212", 100, 100)).await
    }

    async fn start_with(idle: Duration, caps: Arc<ConnCaps>) -> Harness {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let sink = Arc::new(MemorySink::default());
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(run(
            listener,
            Arc::clone(&sink) as Arc<dyn Hj212Sink>,
            async move {
                let _ = stopped.await;
            },
            idle,
            caps,
        ));
        let client = TcpStream::connect(addr).await.unwrap();
        Harness {
            addr,
            sink,
            client,
            stop,
            server,
            replies: Splitter::new(),
        }
    }

    impl Harness {
        /// The next reply frame from the server, CRC-checked by the splitter.
        async fn reply(&mut self) -> Frame {
            loop {
                if let Some(item) = self.replies.next_item() {
                    return hj212::decode(&item.expect("reply with a valid CRC")).unwrap();
                }
                let n = tokio::time::timeout(
                    Duration::from_secs(5),
                    self.client.read_buf(self.replies.buffer_mut()),
                )
                .await
                .expect("reply in time")
                .unwrap();
                assert!(n > 0, "server closed the connection");
            }
        }

        /// Reads until the server closes the connection (within a generous bound), discarding
        /// anything it sent.
        async fn closed(&mut self) {
            closed(&mut self.client).await;
        }

        /// Asserts nothing arrives for a short while and the connection stays open.
        async fn assert_silent(&mut self) {
            let read = tokio::time::timeout(
                Duration::from_millis(300),
                self.client.read_buf(self.replies.buffer_mut()),
            )
            .await;
            assert!(read.is_err(), "unexpected reply or close: {read:?}");
        }
    }

    #[tokio::test]
    async fn good_bad_good_on_one_connection() {
        let mut h = start(IDLE_TIMEOUT).await;
        let mut bad = data_frame("20240501100000002", 5);
        let n = bad.len();
        bad[n - 6..n - 2].copy_from_slice(b"0000");
        h.client
            .write_all(&data_frame("20240501100000001", 5))
            .await
            .unwrap();
        h.client.write_all(&bad).await.unwrap();
        h.client
            .write_all(&data_frame("20240501100000003", 5))
            .await
            .unwrap();

        for qn in ["20240501100000001", "20240501100000003"] {
            let ack = h.reply().await;
            assert_eq!((ack.st.as_str(), ack.cn.as_str()), ("91", "9014"));
            assert_eq!(ack.qn.as_deref(), Some(qn));
            assert_eq!(ack.flag, Some(4));
            assert_eq!(ack.mn, MN);
        }
        let events = h.sink.events();
        let data: Vec<_> = events
            .iter()
            .filter(|e| matches!(e, Event::Data { .. }))
            .collect();
        assert_eq!(data.len(), 2, "{events:?}");
        assert_eq!(
            data[0],
            &Event::Data {
                mn: MN.to_owned(),
                telemetry: serde_json::json!({
                    "ts": "2024-05-01T02:00:00Z", "pm10_ugm3": 80.0, "pm25_ugm3": 35.2, "noise_dba": 62.3
                })
                .as_object()
                .unwrap()
                .clone(),
            }
        );
        let rejects: Vec<_> = events
            .iter()
            .filter(|e| matches!(e, Event::Reject { .. }))
            .collect();
        assert_eq!(
            rejects,
            vec![&Event::Reject {
                mn: Some(MN.to_owned()),
                reason: "bad_crc".to_owned()
            }]
        );

        // Still open: a 2025 heartbeat asking for a reply gets one.
        h.client
            .write_all(&hj212::encode(&format!(
                "QN=20260101000000000;ST=91;CN=9015;PW=123456;MN={MN};Flag=9;CP=&&&&"
            )))
            .await
            .unwrap();
        let ack = h.reply().await;
        assert_eq!((ack.cn.as_str(), ack.flag), ("9014", Some(8)));
        assert!(h.sink.events().contains(&Event::Heartbeat(MN.to_owned())));

        // Shutdown ends the session and the server.
        h.stop.send(()).unwrap();
        let n = tokio::time::timeout(
            Duration::from_secs(5),
            h.client.read_buf(h.replies.buffer_mut()),
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(n, 0);
        tokio::time::timeout(Duration::from_secs(5), h.server)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn failed_store_gets_no_ack_and_keeps_the_connection() {
        let mut h = start(IDLE_TIMEOUT).await;
        h.sink.fail_data.store(true, Ordering::SeqCst);
        h.client
            .write_all(&data_frame("20240501100000001", 5))
            .await
            .unwrap();
        h.assert_silent().await;
        h.sink.fail_data.store(false, Ordering::SeqCst);
        h.client
            .write_all(&data_frame("20240501100000001", 5))
            .await
            .unwrap();
        assert_eq!(h.reply().await.qn.as_deref(), Some("20240501100000001"));
        // Without the A bit the data is stored but not acknowledged.
        h.client
            .write_all(&data_frame("20240501100000002", 4))
            .await
            .unwrap();
        h.assert_silent().await;
        assert_eq!(h.sink.events().len(), 2);
    }

    #[tokio::test]
    async fn refused_content_is_rejected_with_the_mn() {
        let mut h = start(IDLE_TIMEOUT).await;
        h.client
            .write_all(&hj212::encode(&format!(
                "QN=20240501100000001;ST=39;CN=2051;MN={MN};Flag=5;CP=&&DataTime=20240501100000&&"
            )))
            .await
            .unwrap();
        h.client.write_all(b"garbage").await.unwrap();
        h.client
            .write_all(&data_frame("20240501100000002", 5))
            .await
            .unwrap();
        assert_eq!(h.reply().await.qn.as_deref(), Some("20240501100000002"));
        let events = h.sink.events();
        assert_eq!(events[0], Event::Heartbeat(MN.to_owned()));
        assert_eq!(
            events[1],
            Event::Reject {
                mn: Some(MN.to_owned()),
                reason: "unsupported_cn".to_owned()
            }
        );
        assert_eq!(
            events[2],
            Event::Reject {
                mn: None,
                reason: "garbage".to_owned()
            }
        );
        assert!(matches!(events[3], Event::Data { .. }));
    }

    #[tokio::test]
    async fn idle_connection_is_closed() {
        let mut h = start(Duration::from_millis(200)).await;
        h.client.write_all(b"##0101QN=").await.unwrap();
        let n = tokio::time::timeout(
            Duration::from_secs(5),
            h.client.read_buf(h.replies.buffer_mut()),
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(n, 0);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            h.sink.events(),
            vec![Event::Reject {
                mn: None,
                reason: "truncated".to_owned()
            }]
        );
    }

    /// Reads until the server closes `client`, within a generous bound; a reset counts as closed.
    async fn closed(client: &mut TcpStream) {
        let mut sink = [0u8; 4096];
        loop {
            match tokio::time::timeout(Duration::from_secs(20), client.read(&mut sink))
                .await
                .expect("the server closes the connection")
            {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    }

    fn reasons(events: &[Event]) -> Vec<&str> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::Reject { reason, .. } => Some(reason.as_str()),
                _ => None,
            })
            .collect()
    }

    #[tokio::test]
    async fn a_peer_sending_more_than_a_frame_without_a_frame_end_is_dropped() {
        let mut h = start(IDLE_TIMEOUT).await;
        // 64 KiB of garbage without a frame end: one record, then the connection is closed
        // (writing may fail once the server has closed: that is the point).
        let _ = h.client.write_all(&vec![b'x'; 64 * 1024]).await;
        h.closed().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(reasons(&h.sink.events()), ["frame_too_long"]);
    }

    #[tokio::test]
    async fn a_peer_refused_faster_than_the_budget_is_dropped() {
        let mut h = start(IDLE_TIMEOUT).await;
        // Well-framed but empty frames, each a refusal: the budget's worth are quarantined, the
        // next one as too_many_rejects, and the connection ends.
        let empty = hj212::encode("");
        let flood: Vec<u8> = empty.repeat(REJECT_BURST as usize + 50);
        let _ = h.client.write_all(&flood).await;
        h.closed().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let events = h.sink.events();
        let reasons = reasons(&events);
        assert_eq!(reasons.len(), REJECT_BURST as usize + 1, "{reasons:?}");
        assert!(
            !reasons[..REJECT_BURST as usize].contains(&"too_many_rejects"),
            "{reasons:?}"
        );
        assert_eq!(reasons.last(), Some(&"too_many_rejects"));
    }

    #[test]
    fn the_reject_budget_refills_over_time() {
        let t0 = Instant::now();
        let mut budget = RejectBudget::new(t0);
        for _ in 0..REJECT_BURST {
            assert!(budget.take(t0));
        }
        assert!(!budget.take(t0));
        let t1 = t0 + REJECT_REFILL * 2 + REJECT_REFILL / 2;
        assert!(budget.take(t1) && budget.take(t1));
        assert!(!budget.take(t1));
        // The half-refill left over counts towards the next one.
        assert!(budget.take(t0 + REJECT_REFILL * 3));
        // Never more than the burst, however long the connection was quiet.
        let t2 = t0 + REJECT_REFILL * 10_000;
        let mut n = 0;
        while budget.take(t2) {
            n += 1;
        }
        assert_eq!(n, REJECT_BURST);
    }

    #[tokio::test]
    async fn connections_beyond_the_per_address_cap_are_closed_at_accept() {
        let caps = ConnCaps::new("hj212", 100, 2);
        let mut h = start_with(IDLE_TIMEOUT, caps.clone()).await;
        let mut second = TcpStream::connect(h.addr).await.unwrap();
        let mut third = TcpStream::connect(h.addr).await.unwrap();
        closed(&mut third).await;
        // The first two still work.
        second
            .write_all(&data_frame("20240501100000001", 5))
            .await
            .unwrap();
        let mut replies = Splitter::new();
        loop {
            if let Some(item) = replies.next_item() {
                assert_eq!(hj212::decode(&item.unwrap()).unwrap().cn, "9014");
                break;
            }
            let n = second.read_buf(replies.buffer_mut()).await.unwrap();
            assert!(n > 0);
        }
        h.assert_silent().await;
        // Closing one gives its place back.
        drop(second);
        let mut fourth = loop {
            tokio::time::sleep(Duration::from_millis(20)).await;
            if caps.open() < 2 {
                break TcpStream::connect(h.addr).await.unwrap();
            }
        };
        fourth
            .write_all(&data_frame("20240501100000002", 5))
            .await
            .unwrap();
        let mut buf = [0u8; 256];
        let n = tokio::time::timeout(Duration::from_secs(5), fourth.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "the fourth connection is served");
    }

    #[tokio::test]
    async fn a_peer_trickling_bytes_is_idle() {
        let mut h = start(Duration::from_millis(200)).await;
        // A byte every 100 ms never completes a frame (declared 1000 bytes): the idle timeout
        // closes the connection long before the 10 s the trickle would take, although no gap
        // between two bytes is as long as the timeout.
        let mut closed_while_trickling = false;
        for b in b"##1000QN=".iter().chain([b'1'; 91].iter()) {
            if h.client.write_all(&[*b]).await.is_err() {
                closed_while_trickling = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(closed_while_trickling);
        assert_eq!(reasons(&h.sink.events()), ["truncated"]);
    }
}
