//! Server configuration: the only place that reads the environment.
//!
//! Every field comes from a `MESHI_*` variable (or the matching `serve`
//! flag) and has a documented default, so a bare `meshi serve` runs on the
//! embedded default: SQLite in `./meshi.db`, an in-process bus.

use clap::Args;
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "MESHI_ADDR", default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,

    /// Database URL: `sqlite://path` (embedded default) or `postgres://...`.
    #[arg(
        long,
        env = "MESHI_DATABASE_URL",
        default_value = "sqlite://meshi.db",
        hide_env_values = true
    )]
    pub database_url: String,

    /// Redis URL for running several nodes; unset means one node with an
    /// in-process bus.
    #[arg(long, env = "MESHI_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,

    /// Seconds an empty drop-in room stays open before it closes (0 closes
    /// it at once).
    #[arg(long, env = "MESHI_ROOM_EMPTY_GRACE_SECS", default_value_t = 30)]
    pub room_empty_grace_secs: u64,

    /// Messages each room keeps for `room.join` recovery (at least 100).
    #[arg(long, env = "MESHI_ROOM_HISTORY", default_value_t = 200, value_parser = clap::value_parser!(u32).range(100..=100_000))]
    pub room_history: u32,

    /// Largest inbound socket frame in bytes; larger ones close with 1009.
    #[arg(long, env = "MESHI_MAX_FRAME_BYTES", default_value_t = 64 * 1024)]
    pub max_frame_bytes: usize,

    /// Frames per second each socket may send.
    #[arg(long, env = "MESHI_RATE_PER_SEC", default_value_t = 20)]
    pub rate_per_sec: u32,

    /// Frames a socket may send at once before the rate applies.
    #[arg(long, env = "MESHI_RATE_BURST", default_value_t = 40)]
    pub rate_burst: u32,

    /// Frames queued for one socket before it counts as a slow consumer
    /// and is closed with 4009.
    #[arg(long, env = "MESHI_OUTBOX_FRAMES", default_value_t = 1024)]
    pub outbox_frames: usize,

    /// Milliseconds between server pings; a socket silent for two
    /// intervals is closed.
    #[arg(long, env = "MESHI_HEARTBEAT_MS", default_value_t = 25_000)]
    pub heartbeat_ms: u64,

    /// Milliseconds a new socket has to send a valid `hello`.
    #[arg(long, env = "MESHI_HELLO_TIMEOUT_MS", default_value_t = 10_000)]
    pub hello_timeout_ms: u64,

    /// Milliseconds a user stays online after their last socket closes, so
    /// a quick reconnect does not flap their presence.
    #[arg(long, env = "MESHI_PRESENCE_GRACE_MS", default_value_t = 3_000)]
    pub presence_grace_ms: u64,

    /// Lifetime of a session token from login or register, in seconds.
    #[arg(long, env = "MESHI_SESSION_TTL_SECS", default_value_t = 30 * 24 * 3600)]
    pub session_ttl_secs: u64,

    /// Comma-separated browser origins allowed to open sockets (exact
    /// match). Unset allows every origin.
    #[arg(long, env = "MESHI_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,

    /// Comma-separated handles that are admins.
    #[arg(long, env = "MESHI_ADMIN_HANDLES", value_delimiter = ',')]
    pub admin_handles: Vec<String>,

    /// Milliseconds clients are told to wait before reconnecting when the
    /// node drains.
    #[arg(long, env = "MESHI_RECONNECT_AFTER_MS", default_value_t = 1_000)]
    pub reconnect_after_ms: u64,

    /// Seconds the node waits for sockets to flush when it shuts down.
    #[arg(long, env = "MESHI_DRAIN_SECS", default_value_t = 10)]
    pub drain_secs: u64,

    /// Log format: `text` or `json`.
    #[arg(long, env = "MESHI_LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,

    /// Production mode (`--production` or `MESHI_ENV=production`): refuse
    /// to start without explicit configuration.
    #[arg(
        long = "production",
        env = "MESHI_ENV",
        value_parser = parse_production,
        default_value = "development",
        num_args = 0..=1,
        default_missing_value = "production"
    )]
    pub production: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

fn parse_production(value: &str) -> Result<bool, String> {
    match value {
        "production" | "true" => Ok(true),
        "development" | "dev" | "" => Ok(false),
        other => Err(format!(
            "MESHI_ENV must be `production` or `development`, not `{other}`"
        )),
    }
}

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("production mode needs explicit settings; missing: {0}")]
    MissingInProduction(String),
    #[error("{0}")]
    Invalid(String),
}

impl Config {
    /// The defaults, as a bare `meshi serve` with an empty environment
    /// would see them. Tests start from here.
    pub fn defaults() -> Self {
        #[derive(clap::Parser)]
        struct Bare {
            #[command(flatten)]
            config: Config,
        }
        let bare: Bare = clap::Parser::parse_from(["meshi"]);
        bare.config
    }

    /// Checks what clap cannot: cross-field rules and production demands.
    pub fn validate(&self, explicit_database_url: bool) -> Result<(), ConfigError> {
        if self.rate_per_sec == 0 || self.rate_burst == 0 {
            return Err(ConfigError::Invalid(
                "MESHI_RATE_PER_SEC and MESHI_RATE_BURST must be positive".into(),
            ));
        }
        if self.outbox_frames == 0 || self.heartbeat_ms == 0 || self.max_frame_bytes == 0 {
            return Err(ConfigError::Invalid(
                "MESHI_OUTBOX_FRAMES, MESHI_HEARTBEAT_MS and MESHI_MAX_FRAME_BYTES must be positive"
                    .into(),
            ));
        }
        if self.production && !explicit_database_url {
            return Err(ConfigError::MissingInProduction(
                "MESHI_DATABASE_URL".into(),
            ));
        }
        Ok(())
    }

    pub fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.heartbeat_ms)
    }

    pub fn hello_timeout(&self) -> Duration {
        Duration::from_millis(self.hello_timeout_ms)
    }

    pub fn room_empty_grace(&self) -> Duration {
        Duration::from_secs(self.room_empty_grace_secs)
    }

    pub fn is_admin_handle(&self, handle: &str) -> bool {
        self.admin_handles.iter().any(|h| h.trim() == handle)
    }

    pub fn origin_allowed(&self, origin: Option<&str>) -> bool {
        match origin {
            None => true,
            Some(_) if self.allowed_origins.is_empty() => true,
            Some(origin) => self.allowed_origins.iter().any(|o| o.trim() == origin),
        }
    }

    /// Whether the database URL was given explicitly, for production checks.
    pub fn database_url_from_env() -> bool {
        std::env::var_os("MESHI_DATABASE_URL").is_some()
    }
}
