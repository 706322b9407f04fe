//! meshi-loadtest: drives a meshi server over its real protocol and checks
//! every delivered message while it does.
//!
//! A run provisions users over REST, opens sockets, runs one scenario (or
//! several side by side) for a bounded time, then drains, checks and
//! reports. The tool only ever targets loopback addresses unless told the
//! target is the operator's own.
//!
//! # Layout
//! - [`target`]: which URLs and source addresses may be used, and why.
//! - [`system`]: file limits, CPU time and memory of this process and of
//!   the server under test.
//! - [`frame`]: outgoing requests, the light parse of incoming frames, and
//!   the timestamp stamped into every message text.
//! - [`check`]: per recipient and stream: loss, duplication and order.
//! - [`stats`]: counters, HDR histograms, errors by code.
//! - [`client`]: opening sockets (source address, target), pacing, requests.
//! - [`provision`]: registering users and matching pairs over REST.
//! - [`jwt`]: JWTs minted with the server's secret, to sign users on
//!   instead of registering them (`--jwt-secret-file`).
//! - [`ctx`]: the context a scenario runs in: the checked options, the
//!   shared statistics, phase marks, and what a worker asks of its parent.
//! - `measure`: one run in this process, and the sampler and report that
//!   every run, in one process or over workers, is measured by.
//! - [`run`]: where a run starts: in this process or over workers.
//! - [`scenario`]: `connect`, `rooms`, `pairs`, `churn` and `mixed`.
//! - [`report`]: the result as data (JSON) and as a text summary.
//! - [`html`]: the same result as a self-contained HTML page.
//! - [`progress`]: progress bars on stderr.
//! - [`worker`]: a run spread over worker processes, and one worker of it.

pub mod check;
pub mod client;
pub mod ctx;
pub mod frame;
pub mod html;
pub mod jwt;
mod measure;
pub mod progress;
pub mod provision;
pub mod report;
pub mod run;
pub mod scenario;
pub mod stats;
pub mod system;
pub mod target;
pub mod worker;

pub use ctx::{Env, EnvOptions};
pub use report::Report;
pub use run::run;
pub use scenario::Scenario;
