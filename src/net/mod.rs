//! The TCP listener under the HTTP API and the sockets: it refuses
//! connections over the caps (`MESHI_MAX_CONNECTIONS`,
//! `MESHI_MAX_CONNECTIONS_PER_ADDR`) and serves the rest with hyper, each
//! under the deadline of the phase it is in (see [`watch`]): a request
//! head, its body, the gap between requests, a socket upgrade. A client
//! that stalls in any of them is closed instead of holding a connection
//! for ever.

mod body;
mod per_addr;
mod refuse;
mod watch;

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper::header;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::config::{canonical_ip, Config};
use crate::error::Error;
pub use per_addr::{Counted, CountsByAddr};
pub use watch::Deadlines;
use watch::{Phase, Watch, Watched};

/// How long to wait before accepting again after the process ran out of
/// file descriptors or memory: retrying at once would spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// A refused client may try again after this long.
const RETRY_AFTER_MS: u64 = 1_000;

/// What the listener enforces, read once from the configuration.
#[derive(Clone)]
pub struct Limits {
    pub deadlines: Deadlines,
    /// 0 means no limit, for both caps.
    pub max_connections: usize,
    pub max_connections_per_addr: usize,
    config: Arc<Config>,
}

impl Limits {
    pub fn from_config(config: Arc<Config>) -> Self {
        let ms = |ms: u64| (ms > 0).then(|| Duration::from_millis(ms));
        Limits {
            deadlines: Deadlines {
                header: ms(config.http_header_timeout_ms),
                body: ms(config.http_body_timeout_ms),
                idle: ms(config.http_idle_timeout_ms),
                upgrade: ms(config.upgrade_timeout_ms),
            },
            max_connections: config.max_connections,
            max_connections_per_addr: config.max_connections_per_addr,
            config,
        }
    }
}

/// A connection's place under the caps, given back when its socket closes.
pub struct Admitted {
    open: Arc<AtomicUsize>,
    _per_addr: Option<Counted>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
        metrics::gauge!("meshi_tcp_connections").decrement(1.0);
    }
}

/// Serves `router` on `listener` until `draining` is cancelled, then
/// lets every connection finish the request it is in and returns once
/// all have closed (upgraded sockets live on in their own tasks).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    draining: CancellationToken,
) {
    let open = Arc::new(AtomicUsize::new(0));
    let by_addr = CountsByAddr::default();
    let refusals = refuse::Refusals::default();
    let connections = TaskTracker::new();
    loop {
        let (stream, peer) = tokio::select! {
            () = draining.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    if !is_per_connection(&error) {
                        tracing::warn!(%error, "accepting a connection failed");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                    }
                    continue;
                }
            },
        };
        // Pushes are small and latency is the point: without TCP_NODELAY a
        // frame written while the previous one is unacknowledged waits for
        // the peer's delayed ACK, up to 40 ms on Linux.
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "could not set TCP_NODELAY");
        }
        match admit(&limits, &open, &by_addr, peer.ip()) {
            Ok(admitted) => {
                let connection = Connection {
                    router: router.clone(),
                    deadlines: limits.deadlines,
                    peer,
                    draining: draining.clone(),
                };
                connections.spawn(connection.serve(stream, admitted));
            }
            Err(refusal) => refusals.refuse(stream, refusal),
        }
    }
    connections.close();
    connections.wait().await;
}

/// Counts a connection from `ip` under both caps, or says which it is over.
fn admit(
    limits: &Limits,
    open: &Arc<AtomicUsize>,
    by_addr: &CountsByAddr,
    ip: IpAddr,
) -> Result<Admitted, Error> {
    let before = open.fetch_add(1, Ordering::Relaxed);
    if limits.max_connections != 0 && before >= limits.max_connections {
        open.fetch_sub(1, Ordering::Relaxed);
        metrics::counter!("meshi_tcp_connections_refused_total", "limit" => "total").increment(1);
        return Err(Error::Unavailable(
            "a connection (this node holds MESHI_MAX_CONNECTIONS)",
        ));
    }
    let ip = canonical_ip(ip);
    let per_addr = if limits.config.is_trusted_proxy(ip) {
        None
    } else {
        let Some(counted) = by_addr.admit(ip, limits.max_connections_per_addr) else {
            open.fetch_sub(1, Ordering::Relaxed);
            metrics::counter!("meshi_tcp_connections_refused_total", "limit" => "per_addr")
                .increment(1);
            return Err(Error::RateLimited {
                limit: "too many connections from this address (MESHI_MAX_CONNECTIONS_PER_ADDR)"
                    .into(),
                retry_after_ms: RETRY_AFTER_MS,
            });
        };
        Some(counted)
    };
    metrics::gauge!("meshi_tcp_connections").increment(1.0);
    Ok(Admitted {
        open: open.clone(),
        _per_addr: per_addr,
    })
}

/// Errors that end one accepted connection, not the listener.
fn is_per_connection(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}

struct Connection {
    router: Router,
    deadlines: Deadlines,
    peer: SocketAddr,
    draining: CancellationToken,
}

impl Connection {
    async fn serve(self, stream: TcpStream, admitted: Admitted) {
        let watch = Arc::new(Watch::new());
        let io = TokioIo::new(Watched::new(stream, watch.clone(), admitted));
        let service = {
            let watch = watch.clone();
            let Connection {
                router,
                deadlines,
                peer,
                ..
            } = &self;
            let (router, deadlines, peer) = (router.clone(), *deadlines, *peer);
            hyper::service::service_fn(move |request| {
                handle(router.clone(), watch.clone(), deadlines, peer, request)
            })
        };
        let connection = http1::Builder::new()
            // The watch keeps the header deadline; hyper's would also run
            // between requests.
            .header_read_timeout(None)
            .serve_connection(io, service)
            .with_upgrades();
        tokio::pin!(connection);
        let mut closing = false;
        loop {
            let deadline = watch.deadline(&self.deadlines);
            tokio::select! {
                served = connection.as_mut() => {
                    if let Err(error) = served {
                        tracing::debug!(%error, peer = %self.peer, "connection ended with an error");
                    }
                    return;
                }
                () = until(deadline) => {
                    if watch.expired(&self.deadlines) {
                        let phase = watch.phase();
                        metrics::counter!("meshi_http_deadline_closed_total", "deadline" => phase.deadline_name()).increment(1);
                        tracing::debug!(peer = %self.peer, deadline = phase.deadline_name(), "closing a connection past its deadline");
                        return;
                    }
                }
                () = watch.changed() => {}
                () = self.draining.cancelled(), if !closing => {
                    // Idle connections close now; one mid-request closes
                    // after its response.
                    connection.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
        }
    }
}

async fn until(deadline: Option<std::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// One request: the watch learns it began, the body gets its deadline,
/// the router gets the peer address, the response tells the watch when
/// it is done.
async fn handle(
    router: Router,
    watch: Arc<Watch>,
    deadlines: Deadlines,
    peer: SocketAddr,
    request: hyper::Request<Incoming>,
) -> Result<axum::response::Response, Infallible> {
    let upgrade = request.headers().contains_key(header::UPGRADE);
    if upgrade {
        watch.enter_keeping_start(Phase::Upgrade);
        // A head trickled in under the header deadline can still have
        // outlasted the upgrade's own.
        if watch.expired(&deadlines) {
            metrics::counter!("meshi_http_deadline_closed_total", "deadline" => "upgrade")
                .increment(1);
            return Ok(upgrade_too_slow());
        }
    } else {
        watch.enter(Phase::Busy);
    }
    let mut request = request
        .map(|incoming| axum::body::Body::new(body::DeadlineBody::new(incoming, deadlines.body)));
    request.extensions_mut().insert(ConnectInfo(peer));
    let response = router.oneshot(request).await?;
    let upgrading = response.status() == hyper::StatusCode::SWITCHING_PROTOCOLS;
    Ok(response.map(|inner| axum::body::Body::new(body::Finished::new(inner, watch, upgrading))))
}

/// 408 and a close, for an upgrade whose head took past its deadline.
fn upgrade_too_slow() -> axum::response::Response {
    let why = Error::BadRequest(
        "the socket upgrade took longer than MESHI_UPGRADE_TIMEOUT_MS allows".to_owned(),
    );
    hyper::Response::builder()
        .status(hyper::StatusCode::REQUEST_TIMEOUT)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONNECTION, "close")
        .body(axum::body::Body::from(why.response_json()))
        .unwrap_or_default()
}
