//! Which connections are in use. A peer that completes the TLS and HTTP/2
//! handshakes and then only answers keepalive pings holds a connection
//! slot without ever asking for anything; the byte-level silence timeout
//! cannot see it. A tower layer marks each request's connection busy from
//! the request's start to the end of its response body, and
//! `crate::incoming` closes a connection that has had no request for a
//! while. Connections are found by their peer address, unique while open.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::time::Instant;
use tonic::codegen::http;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};

/// One connection's requests: how many are in progress, and when the last
/// one began or ended.
#[derive(Debug)]
pub struct Activity {
    active: AtomicUsize,
    last: Mutex<Instant>,
}

impl Activity {
    fn new(now: Instant) -> Self {
        Self {
            active: AtomicUsize::new(0),
            last: Mutex::new(now),
        }
    }

    /// Since when the connection has had no request in progress; `None`
    /// while one is.
    pub fn idle_since(&self) -> Option<Instant> {
        let last = *self.last.lock().unwrap_or_else(|p| p.into_inner());
        (self.active.load(Ordering::Acquire) == 0).then_some(last)
    }

    fn touch(&self) {
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    /// [`Activity::begin`], for `crate::incoming`'s tests.
    #[cfg(test)]
    pub fn begin_for_test(self: &Arc<Self>) -> Busy {
        self.begin()
    }

    fn begin(self: &Arc<Self>) -> Busy {
        self.active.fetch_add(1, Ordering::AcqRel);
        self.touch();
        Busy(self.clone())
    }
}

/// A request in progress on its connection; ends when dropped.
#[derive(Debug)]
pub struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.touch();
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The open connections' activity, by peer address.
#[derive(Debug, Default)]
pub struct Connections {
    open: Mutex<HashMap<SocketAddr, Arc<Activity>>>,
}

impl Connections {
    /// Starts tracking the connection from `peer`.
    pub fn open(&self, peer: SocketAddr) -> Arc<Activity> {
        let activity = Arc::new(Activity::new(Instant::now()));
        self.map().insert(peer, activity.clone());
        activity
    }

    /// Stops tracking it (the connection closed).
    pub fn close(&self, peer: SocketAddr) {
        self.map().remove(&peer);
    }

    fn find(&self, peer: SocketAddr) -> Option<Arc<Activity>> {
        self.map().get(&peer).cloned()
    }

    /// [`Connections::find`], for `crate::incoming`'s tests.
    #[cfg(test)]
    pub fn find_for_test(&self, peer: SocketAddr) -> Option<Arc<Activity>> {
        self.find(peer)
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, Arc<Activity>>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The layer that marks connections busy, for `tonic`'s server builder.
#[derive(Clone, Debug)]
pub struct ActivityLayer(pub Arc<Connections>);

impl<S> tower_layer::Layer<S> for ActivityLayer {
    type Service = Tracked<S>;

    fn layer(&self, inner: S) -> Tracked<S> {
        Tracked {
            inner,
            connections: self.0.clone(),
        }
    }
}

/// A service whose requests mark their connection busy.
#[derive(Clone, Debug)]
pub struct Tracked<S> {
    inner: S,
    connections: Arc<Connections>,
}

impl<S, ReqBody, ResBody> tower_service::Service<http::Request<ReqBody>> for Tracked<S>
where
    S: tower_service::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<TrackedBody<ResBody>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let busy = peer_of(&request)
            .and_then(|peer| self.connections.find(peer))
            .map(|activity| activity.begin());
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            Ok(response.map(|body| TrackedBody {
                body: Box::pin(body),
                _busy: busy,
            }))
        })
    }
}

/// The peer address tonic put in a request's extensions.
fn peer_of<B>(request: &http::Request<B>) -> Option<SocketAddr> {
    let extensions = request.extensions();
    extensions
        .get::<TcpConnectInfo>()
        .and_then(TcpConnectInfo::remote_addr)
        .or_else(|| {
            extensions
                .get::<TlsConnectInfo<TcpConnectInfo>>()
                .and_then(|info| info.get_ref().remote_addr())
        })
}

/// A response body that keeps its connection busy until it has been sent
/// (a model download can take long after its response began).
pub struct TrackedBody<B> {
    body: Pin<Box<B>>,
    _busy: Option<Busy>,
}

impl<B: http_body::Body> http_body::Body for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<B::Data>, B::Error>>> {
        self.get_mut().body.as_mut().poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_is_busy_from_a_request_to_its_body_end() {
        let connections = Connections::default();
        let peer: SocketAddr = ([127, 0, 0, 1], 4000).into();
        let activity = connections.open(peer);
        assert!(activity.idle_since().is_some());
        let busy = connections.find(peer).expect("tracked").begin();
        assert!(activity.idle_since().is_none(), "busy while a request runs");
        drop(busy);
        assert!(activity.idle_since().is_some());
        connections.close(peer);
        assert!(connections.find(peer).is_none());
    }
}
