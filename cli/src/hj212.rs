//! HJ 212 TCP session server for dust/noise monitors (DOMAIN.md §3, §11.5), shared by
//! `smartsite serve --hj212` and `smartsite gateway hj212`.
//!
//! Devices keep one long-lived connection and resend unacknowledged data, so the server never
//! drops a connection over a bad frame: it reports the frame and carries on. A 9014 ack is
//! sent only once the sink has durably accepted the data, which makes the device's resend the
//! retry mechanism when storage fails.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};
use smartsite_shared::domain::hj212::{
    self, Frame, Hj212Error, Kind, RawFrame, Rejected, Splitter,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{debug, error, info, warn};

/// Connections without a byte for this long are closed. Devices upload at least every few
/// minutes (`RtdInterval`, heartbeats), so a silent socket is a dead NAT mapping or a stuck peer.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(600);
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
) -> io::Result<()> {
    run(listener, sink, shutdown, IDLE_TIMEOUT).await
}

async fn run(
    listener: TcpListener,
    sink: Arc<dyn Hj212Sink>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    idle: Duration,
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
                    debug!(%peer, "HJ 212 connection opened");
                    sessions.spawn(session(stream, peer, Arc::clone(&sink), idle, stop_rx.clone()));
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
    };
    let mut splitter = Splitter::new();
    loop {
        while let Some(item) = splitter.next_item() {
            if let Err(e) = state.handle(&mut stream, item).await {
                debug!(%peer, error = %e, "HJ 212 ack write failed; closing");
                return;
            }
        }
        let buf = splitter.buffer_mut();
        buf.reserve(READ_CHUNK);
        tokio::select! {
            _ = stop.changed() => break,
            read = tokio::time::timeout(idle, stream.read_buf(buf)) => match read {
                Ok(Ok(0)) => {
                    if let Some(rest) = splitter.finish() {
                        state.rejected(rest).await;
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
                        state.rejected(rest).await;
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
    /// Handles one splitter item. Only a failed ack write is an error: it means the socket is gone.
    async fn handle(
        &mut self,
        stream: &mut TcpStream,
        item: Result<RawFrame, Rejected>,
    ) -> io::Result<()> {
        match item {
            Err(rejected) => {
                self.rejected(rejected).await;
                Ok(())
            }
            Ok(raw) => self.frame(stream, &raw).await,
        }
    }

    async fn frame(&mut self, stream: &mut TcpStream, raw: &RawFrame) -> io::Result<()> {
        let peer = self.peer;
        let frame = match hj212::decode(raw) {
            Ok(frame) => frame,
            Err(e) => {
                let mn = hj212::sniff_mn(raw.segment());
                self.reject(mn.as_deref(), raw.as_bytes(), &e).await;
                return Ok(());
            }
        };
        if !frame.mn_standard && !self.warned_mn {
            warn!(%peer, mn = %frame.mn, "HJ 212 MN is not 24 characters of 0-9/A-F; accepting it");
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
                self.reject(Some(&frame.mn), raw.as_bytes(), &e).await;
                return Ok(());
            }
        };
        for flag in &telemetry.flags {
            debug!(%peer, mn = %frame.mn, field = flag.field, flag = %flag.flag, "HJ 212 factor not normal");
        }
        match self.sink.data(peer, &frame, telemetry.values).await {
            Ok(()) => self.ack(stream, &frame).await,
            Err(e) => {
                // No ack: the device resends, which retries the store.
                warn!(%peer, mn = %frame.mn, error = %e, "HJ 212 data not accepted; not acknowledging");
                Ok(())
            }
        }
    }

    /// Sends the 9014 reply when the frame's A bit asks for one.
    async fn ack(&self, stream: &mut TcpStream, frame: &Frame) -> io::Result<()> {
        if !frame.needs_ack {
            return Ok(());
        }
        let reply = hj212::data_ack(frame);
        match tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(&reply)).await {
            Ok(result) => result,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "ack write timed out",
            )),
        }
    }

    async fn rejected(&self, rejected: Rejected) {
        let mn = match rejected.error.reason {
            hj212::Reason::Garbage => None,
            _ => hj212::sniff_mn(&rejected.raw),
        };
        self.reject(mn.as_deref(), &rejected.raw, &rejected.error)
            .await;
    }

    async fn reject(&self, mn: Option<&str>, raw: &[u8], error: &Hj212Error) {
        debug!(peer = %self.peer, mn, reason = error.reason.code(), detail = %error.detail, "HJ 212 frame rejected");
        self.sink
            .reject(self.peer, mn, raw, error.reason.code(), &error.detail)
            .await;
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
        sink: Arc<MemorySink>,
        client: TcpStream,
        stop: oneshot::Sender<()>,
        server: tokio::task::JoinHandle<io::Result<()>>,
        replies: Splitter,
    }

    async fn start(idle: Duration) -> Harness {
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
        ));
        let client = TcpStream::connect(addr).await.unwrap();
        Harness {
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
}
