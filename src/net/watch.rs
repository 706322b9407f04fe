//! Where one HTTP connection is in its life, and which deadline that puts
//! it under. hyper's own header timer also runs between kept-alive
//! requests, so idle and header deadlines could not differ; this watch
//! tells the phases apart.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;

use super::Admitted;

/// The deadlines a connection lives under; `None` is no deadline.
#[derive(Clone, Copy, Debug)]
pub struct Deadlines {
    /// From a request's first byte (or the accept) to its whole head.
    pub header: Option<Duration>,
    /// From a request's head to the end of its body.
    pub body: Option<Duration>,
    /// Between a response and the next request's first byte.
    pub idle: Option<Duration>,
    /// From a socket upgrade's first byte (or the accept) to the `101`
    /// written.
    pub upgrade: Option<Duration>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// Waiting for or reading a request head.
    Head = 0,
    /// A request is being served; its body has a deadline of its own.
    Busy = 1,
    /// A socket upgrade is being served.
    Upgrade = 2,
    /// Between requests.
    Idle = 3,
}

impl Phase {
    fn from_u8(raw: u8) -> Phase {
        match raw {
            0 => Phase::Head,
            1 => Phase::Busy,
            2 => Phase::Upgrade,
            _ => Phase::Idle,
        }
    }

    /// The metric label of the deadline this phase is under.
    pub fn deadline_name(self) -> &'static str {
        match self {
            Phase::Head => "header",
            Phase::Busy => "none",
            Phase::Upgrade => "upgrade",
            Phase::Idle => "idle",
        }
    }
}

pub struct Watch {
    epoch: Instant,
    phase: AtomicU8,
    /// Milliseconds after `epoch` the phase began.
    since_ms: AtomicU64,
    changed: Notify,
}

impl Watch {
    /// A connection accepted now, waiting for its first request.
    pub fn new() -> Self {
        Watch {
            epoch: Instant::now(),
            phase: AtomicU8::new(Phase::Head as u8),
            since_ms: AtomicU64::new(0),
            changed: Notify::new(),
        }
    }

    pub fn phase(&self) -> Phase {
        Phase::from_u8(self.phase.load(Ordering::Acquire))
    }

    /// Moves to `phase` from now on.
    pub fn enter(&self, phase: Phase) {
        self.since_ms.store(self.elapsed_ms(), Ordering::Release);
        self.phase.store(phase as u8, Ordering::Release);
        self.changed.notify_one();
    }

    /// A request head or an upgrade keeps the clock of the phase before
    /// it: its deadline counts from the request's first byte, not from
    /// when hyper finished parsing it.
    pub fn enter_keeping_start(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::Release);
        self.changed.notify_one();
    }

    /// Bytes arrived: an idle connection has begun its next request.
    fn heard(&self) {
        let idle = Phase::Idle as u8;
        let head = Phase::Head as u8;
        if self.phase.load(Ordering::Relaxed) == idle {
            self.since_ms.store(self.elapsed_ms(), Ordering::Release);
            if self
                .phase
                .compare_exchange(idle, head, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                self.changed.notify_one();
            }
        }
    }

    /// When the current phase runs out, if it can.
    pub fn deadline(&self, deadlines: &Deadlines) -> Option<Instant> {
        let allowed = match self.phase() {
            Phase::Head => deadlines.header,
            Phase::Busy => None,
            Phase::Upgrade => deadlines.upgrade,
            Phase::Idle => deadlines.idle,
        }?;
        let since = Duration::from_millis(self.since_ms.load(Ordering::Acquire));
        Some(self.epoch + since + allowed)
    }

    pub fn expired(&self, deadlines: &Deadlines) -> bool {
        self.deadline(deadlines)
            .is_some_and(|at| at <= Instant::now())
    }

    /// Resolves after the next phase change (or at once if one happened
    /// since the last call).
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// The connection's socket as hyper sees it: reads tell the watch when an
/// idle connection speaks again, and the connection's place under the
/// caps lasts as long as the socket, through an upgrade too.
pub struct Watched {
    stream: TcpStream,
    watch: Arc<Watch>,
    _admitted: Admitted,
}

impl Watched {
    pub fn new(stream: TcpStream, watch: Arc<Watch>, admitted: Admitted) -> Self {
        Watched {
            stream,
            watch,
            _admitted: admitted,
        }
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.stream).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.watch.heard();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEADLINES: Deadlines = Deadlines {
        header: Some(Duration::from_secs(10)),
        body: Some(Duration::from_secs(15)),
        idle: Some(Duration::from_secs(60)),
        upgrade: Some(Duration::from_secs(20)),
    };

    #[test]
    fn each_phase_has_its_own_deadline() {
        let watch = Watch::new();
        let accepted = watch.epoch;
        assert_eq!(
            watch.deadline(&DEADLINES),
            Some(accepted + Duration::from_secs(10))
        );
        watch.enter_keeping_start(Phase::Upgrade);
        assert_eq!(
            watch.deadline(&DEADLINES),
            Some(accepted + Duration::from_secs(20))
        );
        watch.enter(Phase::Busy);
        assert_eq!(watch.deadline(&DEADLINES), None);
        watch.enter(Phase::Idle);
        let idle = watch.deadline(&DEADLINES).unwrap();
        assert!(idle >= accepted + Duration::from_secs(60));
    }

    #[test]
    fn bytes_on_an_idle_connection_start_a_request_head() {
        let watch = Watch::new();
        watch.enter(Phase::Idle);
        watch.heard();
        assert_eq!(watch.phase(), Phase::Head);
        watch.enter(Phase::Busy);
        watch.heard();
        assert_eq!(watch.phase(), Phase::Busy, "a body read is not a new head");
    }
}
