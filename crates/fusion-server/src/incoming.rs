//! Accepted connections, bounded. Each one holds a slot of
//! `max_connections`, and one of its address's `max_connections_per_ip`,
//! for its whole life (beyond either cap, a connection is closed as soon
//! as it is accepted, so idle sockets cannot exhaust file descriptors, and
//! one host cannot take every slot and lock honest clients out), must send
//! its first bytes
//! within [`FIRST_BYTES`] (a TLS ClientHello or the HTTP/2 preface), and
//! is closed after [`IDLE`] without reading anything (a live HTTP/2
//! connection answers the server's keepalive pings well within it). Accept
//! errors such as running out of file descriptors back off instead of
//! spinning.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::{Instant, Sleep};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::{Connected, TcpConnectInfo};

use crate::activity::{Activity, Connections};
use crate::metrics::Metrics;

/// Time a new connection has to send its first bytes.
pub const FIRST_BYTES: Duration = Duration::from_secs(10);
/// Time a connection may go without sending anything. The server pings
/// every [`KEEPALIVE`], so a live peer is heard from at least that often.
pub const IDLE: Duration = Duration::from_secs(60);
/// HTTP/2 keepalive ping interval of the server.
pub const KEEPALIVE: Duration = Duration::from_secs(20);

/// The bounds on connections.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Connections open at once.
    pub max: usize,
    /// Connections open at once from one address.
    pub max_per_ip: usize,
    /// Time a new connection has to send its first bytes.
    pub first_bytes: Duration,
    /// Time a connection may go without sending anything.
    pub idle: Duration,
    /// With `tracked`: time a connection may go with no request in
    /// progress (a peer that only answers keepalive pings holds a slot).
    pub no_request: Duration,
    /// Whose requests mark the connections busy (`crate::activity`);
    /// without it, `no_request` does not apply.
    pub tracked: Option<Arc<Connections>>,
}

impl Limits {
    /// The server's bounds: `max` connections, `max_per_ip` from one
    /// address, [`FIRST_BYTES`], [`IDLE`].
    pub fn new(max: usize, max_per_ip: usize) -> Self {
        Self {
            max,
            max_per_ip,
            first_bytes: FIRST_BYTES,
            idle: IDLE,
            no_request: IDLE,
            tracked: None,
        }
    }

    /// These limits, and connections closed after `no_request` without a
    /// request in progress, as `connections` sees them.
    pub fn with_requests(mut self, connections: Arc<Connections>, no_request: Duration) -> Self {
        self.tracked = Some(connections);
        self.no_request = no_request;
        self
    }
}

/// A stream of accepted connections for tonic, within `limits`. The
/// accept loop stops when the stream is dropped (at shutdown).
pub fn guarded(
    listener: TcpListener,
    limits: Limits,
    metrics: Arc<Metrics>,
) -> ReceiverStream<io::Result<GuardedStream>> {
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(accept_loop(listener, limits, metrics, tx));
    ReceiverStream::new(rx)
}

async fn accept_loop(
    listener: TcpListener,
    limits: Limits,
    metrics: Arc<Metrics>,
    tx: mpsc::Sender<io::Result<GuardedStream>>,
) {
    let slots = Arc::new(Semaphore::new(limits.max));
    let per_ip = Arc::new(Mutex::new(HashMap::<IpAddr, usize>::new()));
    let mut last_warning: Option<Instant> = None;
    let mut warn = |what: String| {
        // At most one warning a minute: a flood must not flood the log.
        if last_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
            tracing::warn!("{what}");
            last_warning = Some(Instant::now());
        }
    };
    loop {
        let accepted = tokio::select! {
            () = tx.closed() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors (or another transient failure):
                // wait for connections to close rather than spin.
                warn(format!("accepting a connection failed: {e}; backing off"));
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(ip_slot) = IpSlot::take(&per_ip, peer.ip(), limits.max_per_ip) else {
            metrics.connections_refused.inc();
            warn(format!(
                "{} already has {} connections open (max_connections_per_ip); closing its new ones",
                peer.ip(),
                limits.max_per_ip
            ));
            continue;
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics.connections_refused.inc();
            warn(format!(
                "{} connections are open (max_connections); closing new ones until some close",
                limits.max
            ));
            continue;
        };
        let _ = stream.set_nodelay(true);
        let tracking = limits
            .tracked
            .as_ref()
            .map(|c| Tracking::new(c.clone(), peer));
        let guarded = GuardedStream::new(
            stream,
            (slot, ip_slot),
            limits.clone(),
            tracking,
            metrics.clone(),
        );
        if tx.send(Ok(guarded)).await.is_err() {
            return;
        }
    }
}

/// The same bounds for the status page's HTTP listener, in the form axum
/// serves from: its idle sockets must not use up the file descriptors
/// the gRPC listener needs either.
#[derive(Debug)]
pub struct GuardedListener {
    accepted: ReceiverStream<io::Result<GuardedStream>>,
    local: std::net::SocketAddr,
}

impl GuardedListener {
    /// `listener` within `limits`.
    pub fn new(listener: TcpListener, limits: Limits, metrics: Arc<Metrics>) -> io::Result<Self> {
        let local = listener.local_addr()?;
        Ok(Self {
            accepted: guarded(listener, limits, metrics),
            local,
        })
    }
}

impl axum::serve::Listener for GuardedListener {
    type Io = GuardedStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (GuardedStream, std::net::SocketAddr) {
        use tokio_stream::StreamExt;
        loop {
            match self.accepted.next().await {
                Some(Ok(stream)) => {
                    let Ok(peer) = stream.inner.peer_addr() else {
                        continue;
                    };
                    return (stream, peer);
                }
                Some(Err(_)) => continue,
                // The accept loop ended: the server is shutting down.
                None => std::future::pending::<()>().await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<std::net::SocketAddr> {
        Ok(self.local)
    }
}

/// One of an address's connection slots, given back on drop.
#[derive(Debug)]
struct IpSlot {
    counts: Arc<Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl IpSlot {
    /// A slot for `ip`, unless it already holds `max`.
    fn take(counts: &Arc<Mutex<HashMap<IpAddr, usize>>>, ip: IpAddr, max: usize) -> Option<Self> {
        let mut map = counts.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(ip).or_default();
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(Self {
            counts: counts.clone(),
            ip,
        })
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut map = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

/// A connection's entry in the request tracking, removed when it closes.
#[derive(Debug)]
struct Tracking {
    connections: Arc<Connections>,
    peer: std::net::SocketAddr,
    activity: Arc<Activity>,
}

impl Tracking {
    fn new(connections: Arc<Connections>, peer: std::net::SocketAddr) -> Self {
        let activity = connections.open(peer);
        Self {
            connections,
            peer,
            activity,
        }
    }
}

impl Drop for Tracking {
    fn drop(&mut self) {
        self.connections.close(self.peer);
    }
}

/// A TCP connection that holds its connection slots and times out silence.
#[derive(Debug)]
pub struct GuardedStream {
    inner: TcpStream,
    _slots: (OwnedSemaphorePermit, IpSlot),
    tracking: Option<Tracking>,
    limits: Limits,
    metrics: Arc<Metrics>,
    heard: bool,
    accepted: Instant,
    last_read: Instant,
    timer: Pin<Box<Sleep>>,
}

impl GuardedStream {
    fn new(
        inner: TcpStream,
        slots: (OwnedSemaphorePermit, IpSlot),
        limits: Limits,
        tracking: Option<Tracking>,
        metrics: Arc<Metrics>,
    ) -> Self {
        metrics.connections.inc();
        let now = Instant::now();
        let first = match &tracking {
            Some(_) => limits.first_bytes.min(limits.no_request),
            None => limits.first_bytes,
        };
        let timer = Box::pin(tokio::time::sleep_until(now + first));
        Self {
            inner,
            _slots: slots,
            tracking,
            limits,
            metrics,
            heard: false,
            accepted: now,
            last_read: now,
            timer,
        }
    }
}

impl Drop for GuardedStream {
    fn drop(&mut self) {
        self.metrics.connections.dec();
    }
}

impl Connected for GuardedStream {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.inner.connect_info()
    }
}

impl AsyncRead for GuardedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if buf.filled().len() > before {
                    // The timer is not moved on every read (that would
                    // cost a timer update per packet); it is re-armed from
                    // here when it fires.
                    this.heard = true;
                    this.last_read = Instant::now();
                }
                Poll::Ready(result)
            }
            Poll::Pending => loop {
                if this.timer.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                let now = Instant::now();
                let (mut deadline, mut why) = if this.heard {
                    let due = this.last_read + this.limits.idle;
                    (due, format!("connection silent for {:?}", this.limits.idle))
                } else {
                    let due = this.accepted + this.limits.first_bytes;
                    (
                        due,
                        format!("no handshake within {:?}", this.limits.first_bytes),
                    )
                };
                if let Some(since) = this.tracking.as_ref().and_then(|t| t.activity.idle_since()) {
                    let due = since + this.limits.no_request;
                    if due < deadline {
                        deadline = due;
                        why = format!("no request for {:?}", this.limits.no_request);
                    }
                }
                if deadline <= now {
                    this.metrics.connections_timed_out.inc();
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, why)));
                }
                this.timer.as_mut().reset(deadline);
            },
        }
    }
}

impl AsyncWrite for GuardedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn silence_is_cut_and_the_cap_closes_extra_connections() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let metrics = Arc::new(Metrics::new());
        let limits = Limits {
            max: 2,
            max_per_ip: 2,
            first_bytes: Duration::from_millis(200),
            idle: Duration::from_millis(500),
            no_request: Duration::from_secs(60),
            tracked: None,
        };
        let mut incoming = guarded(listener, limits.clone(), metrics.clone());
        use tokio_stream::StreamExt;

        // A connection that never speaks is closed after `first_bytes`.
        let _quiet = TcpStream::connect(addr).await.expect("connect");
        let mut server_side = incoming.next().await.expect("accepted").expect("ok");
        let mut byte = [0u8; 1];
        let err = server_side.read(&mut byte).await.expect_err("timed out");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(err.to_string().contains("no handshake"), "{err}");

        // One that speaks is kept until it is silent for `idle`.
        let mut talker = TcpStream::connect(addr).await.expect("connect");
        let mut talked = incoming.next().await.expect("accepted").expect("ok");
        talker.write_all(b"hello").await.expect("write");
        let mut five = [0u8; 5];
        talked.read_exact(&mut five).await.expect("read");
        let started = Instant::now();
        let err = talked.read(&mut byte).await.expect_err("idle");
        assert!(err.to_string().contains("silent"), "{err}");
        assert!(started.elapsed() >= limits.idle - Duration::from_millis(50));
        assert_eq!(metrics.connections_timed_out.get(), 2);

        // Two slots: with both held, a third connection is closed at once.
        drop((server_side, talked));
        let _a = TcpStream::connect(addr).await.expect("connect");
        let held_a = incoming.next().await.expect("accepted").expect("ok");
        let _b = TcpStream::connect(addr).await.expect("connect");
        let _held_b = incoming.next().await.expect("accepted").expect("ok");
        let mut c = TcpStream::connect(addr).await.expect("connect");
        let n = c.read(&mut byte).await.unwrap_or(0);
        assert_eq!(n, 0, "closed at once");
        assert_eq!(metrics.connections_refused.get(), 1);
        assert_eq!(metrics.connections.get(), 2);
        drop(held_a);
        assert_eq!(metrics.connections.get(), 1);
    }

    #[tokio::test]
    async fn one_address_cannot_take_every_slot() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let metrics = Arc::new(Metrics::new());
        let limits = Limits::new(10, 2);
        let mut incoming = guarded(listener, limits, metrics.clone());
        use tokio_stream::StreamExt;
        let from = |ip: [u8; 4]| async move {
            let socket = tokio::net::TcpSocket::new_v4().expect("socket");
            socket.bind((ip, 0).into()).expect("bind source");
            socket.connect(addr).await.expect("connect")
        };
        let _one = from([127, 0, 0, 1]).await;
        let _held_one = incoming.next().await.expect("accepted").expect("ok");
        let _two = from([127, 0, 0, 1]).await;
        let _held_two = incoming.next().await.expect("accepted").expect("ok");
        let mut three = from([127, 0, 0, 1]).await;
        let mut byte = [0u8; 1];
        assert_eq!(
            three.read(&mut byte).await.unwrap_or(0),
            0,
            "closed at once"
        );
        // Another address still gets in.
        let _other = from([127, 0, 0, 2]).await;
        let _held_other = incoming.next().await.expect("accepted").expect("ok");
        assert_eq!(metrics.connections_refused.get(), 1);
        assert_eq!(metrics.connections.get(), 3);
    }

    #[tokio::test]
    async fn a_connection_that_only_keeps_alive_is_closed() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let metrics = Arc::new(Metrics::new());
        let connections = Arc::new(Connections::default());
        let limits =
            Limits::new(10, 10).with_requests(connections.clone(), Duration::from_millis(400));
        let mut incoming = guarded(listener, limits, metrics.clone());
        use tokio_stream::StreamExt;

        // It talks (as a client answering pings would) but asks nothing.
        let mut pinger = TcpStream::connect(addr).await.expect("connect");
        let mut server_side = incoming.next().await.expect("accepted").expect("ok");
        let started = Instant::now();
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 64];
            loop {
                if let Err(e) = server_side.read(&mut buf).await {
                    return e;
                }
            }
        });
        for _ in 0..20 {
            if reader.is_finished() {
                break;
            }
            let _ = pinger.write_all(b"ping").await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let err = reader.await.expect("reader");
        assert!(err.to_string().contains("no request"), "{err}");
        assert!(started.elapsed() < Duration::from_millis(1500));

        // One with a request in progress stays, however long it lasts.
        let mut busy_client = TcpStream::connect(addr).await.expect("connect");
        let mut busy_side = incoming.next().await.expect("accepted").expect("ok");
        let peer = busy_client.local_addr().expect("addr");
        let request = connections
            .find_for_test(peer)
            .expect("tracked")
            .begin_for_test();
        for _ in 0..8 {
            busy_client.write_all(b"data").await.expect("write");
            let mut four = [0u8; 4];
            busy_side.read_exact(&mut four).await.expect("still open");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        drop(request);
        drop(busy_side);
        assert!(
            connections.find_for_test(peer).is_none(),
            "untracked once closed"
        );
    }
}
