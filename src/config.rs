//! Server configuration: the only place that reads the environment.
//!
//! Every field comes from a `MESHI_*` variable (or the matching `serve`
//! flag) and has a documented default, so a bare `meshi serve` runs on the
//! embedded default: SQLite in `./meshi.db`, an in-process bus.
//!
//! Secrets come from the environment or from a file the environment names,
//! never from a default. `Debug` shows none of them, so a config can be
//! logged whole.

use clap::Args;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Shortest HS256 secret accepted: RFC 7518 asks for a key at least as
/// long as the hash, 256 bits.
pub const MIN_JWT_SECRET_BYTES: usize = 32;

#[derive(Clone, Args)]
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

    /// PEM file of the certificate authorities that sign the database
    /// server's certificate, in place of the URL's `sslrootcert` (which
    /// it overrides); trusted beside the public web roots. Used by
    /// `sslmode=verify-ca` and `verify-full`, and by `require`, which then
    /// checks the chain as `verify-ca` does.
    #[arg(long, env = "MESHI_DATABASE_CA_FILE")]
    pub database_ca_file: Option<PathBuf>,

    /// Redis URL for running several nodes: `redis://...`, or
    /// `rediss://...` for TLS. Unset means one node with an in-process bus.
    #[arg(long, env = "MESHI_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,

    /// PEM file of the certificate authorities that sign Redis's
    /// certificate, for a `rediss://` URL, trusted alone; unset trusts the
    /// system's roots.
    #[arg(long, env = "MESHI_REDIS_CA_FILE")]
    pub redis_ca_file: Option<PathBuf>,

    /// Prefix of every Redis key and channel, so several deployments (or
    /// test runs) can share one Redis.
    #[arg(long, env = "MESHI_REDIS_PREFIX", default_value = "meshi")]
    pub redis_prefix: String,

    /// This node's name in the cluster; unset picks a random one at start.
    /// Names must be unique among running nodes.
    #[arg(long, env = "MESHI_NODE_ID")]
    pub node_id: Option<String>,

    /// Milliseconds a node counts as alive after its last heartbeat into
    /// Redis; it heartbeats three times per period. When a node dies, its
    /// users go offline and leave their rooms on every other node within
    /// about this long.
    #[arg(long, env = "MESHI_NODE_TTL_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(300..=600_000))]
    pub node_ttl_ms: u64,

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

    /// HS256 secret shared with the identity provider whose JWTs are
    /// accepted as tokens (at least 32 bytes).
    #[arg(long, env = "MESHI_JWT_SECRET", hide_env_values = true, value_parser = Secret::parse)]
    pub jwt_secret: Option<Secret>,

    /// File holding the HS256 secret instead of `MESHI_JWT_SECRET`; one
    /// trailing newline is ignored.
    #[arg(long, env = "MESHI_JWT_SECRET_FILE")]
    pub jwt_secret_file: Option<PathBuf>,

    /// PEM file with the identity provider's RSA public key, for RS256 JWTs.
    #[arg(long, env = "MESHI_JWT_PUBLIC_KEY_FILE")]
    pub jwt_public_key_file: Option<PathBuf>,

    /// Required `iss` of identity-provider JWTs; unset skips the check.
    #[arg(long, env = "MESHI_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// Required `aud` of identity-provider JWTs; unset skips the check.
    #[arg(long, env = "MESHI_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,

    /// Seconds of clock difference with the identity provider tolerated
    /// when checking `exp` and `nbf`.
    #[arg(long, env = "MESHI_JWT_LEEWAY_SECS", default_value_t = 30)]
    pub jwt_leeway_secs: u64,

    /// Milliseconds clients are told to wait before reconnecting when the
    /// node drains.
    #[arg(long, env = "MESHI_RECONNECT_AFTER_MS", default_value_t = 1_000)]
    pub reconnect_after_ms: u64,

    /// Seconds the node waits for sockets to flush when it shuts down.
    #[arg(long, env = "MESHI_DRAIN_SECS", default_value_t = 10)]
    pub drain_secs: u64,

    /// Address of a second listener that serves `/metrics` only, so the
    /// metrics need not face the internet; unset serves them on `MESHI_ADDR`.
    #[arg(long, env = "MESHI_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,

    /// Milliseconds a client has to send a request's headers (the socket
    /// upgrade's included) from the moment it connects or starts a request.
    #[arg(long, env = "MESHI_HTTP_HEADER_TIMEOUT_MS", default_value_t = 10_000)]
    pub http_header_timeout_ms: u64,

    /// Milliseconds a client has to send a request's whole body.
    #[arg(long, env = "MESHI_HTTP_BODY_TIMEOUT_MS", default_value_t = 15_000)]
    pub http_body_timeout_ms: u64,

    /// Milliseconds a kept-alive HTTP connection may sit between requests.
    #[arg(long, env = "MESHI_HTTP_IDLE_TIMEOUT_MS", default_value_t = 60_000)]
    pub http_idle_timeout_ms: u64,

    /// Milliseconds from accepting a connection to completing a socket
    /// upgrade (the `101` written).
    #[arg(long, env = "MESHI_UPGRADE_TIMEOUT_MS", default_value_t = 10_000)]
    pub upgrade_timeout_ms: u64,

    /// Open TCP connections (HTTP and sockets) this node holds at once;
    /// more are refused with 503. 0 means no limit.
    #[arg(long, env = "MESHI_MAX_CONNECTIONS", default_value_t = 50_000)]
    pub max_connections: usize,

    /// Open TCP connections from one peer address; more are refused with
    /// 429. Trusted proxies are exempt. 0 means no limit.
    #[arg(long, env = "MESHI_MAX_CONNECTIONS_PER_ADDR", default_value_t = 256)]
    pub max_connections_per_addr: usize,

    /// Register and login attempts per minute per client address and per
    /// handle. 0 means no limit.
    #[arg(long, env = "MESHI_AUTH_RATE_PER_MIN", default_value_t = 10)]
    pub auth_rate_per_min: u32,

    /// Comma-separated proxy addresses or CIDRs whose `X-Forwarded-For`
    /// names the client; every other peer is the client itself.
    #[arg(long, env = "MESHI_TRUSTED_PROXIES", value_delimiter = ',', value_parser = parse_proxy)]
    pub trusted_proxies: Vec<ipnet::IpNet>,

    /// Password hashes queued or running at once (register and login);
    /// more answer 503 at once. 0 means no limit.
    #[arg(long, env = "MESHI_HASH_QUEUE", default_value_t = 64)]
    pub hash_queue: usize,

    /// Open sockets per user on this node; more are refused with 429
    /// before the upgrade. 0 means no limit.
    #[arg(long, env = "MESHI_MAX_SOCKETS_PER_USER", default_value_t = 16)]
    pub max_sockets_per_user: usize,

    /// Open sockets per client address on this node; more are refused with
    /// 429 before the upgrade. 0 means no limit.
    #[arg(long, env = "MESHI_MAX_SOCKETS_PER_ADDR", default_value_t = 64)]
    pub max_sockets_per_addr: usize,

    /// Open drop-in rooms one user hosts at once. 0 means no limit.
    #[arg(long, env = "MESHI_MAX_HOSTED_ROOMS", default_value_t = 3)]
    pub max_hosted_rooms: usize,

    /// `room.create` calls per minute per user. 0 means no limit.
    #[arg(long, env = "MESHI_ROOM_CREATE_PER_MIN", default_value_t = 6)]
    pub room_create_per_min: u32,

    /// Rooms one socket may be joined to at once. 0 means no limit.
    #[arg(long, env = "MESHI_MAX_ROOMS_PER_SOCKET", default_value_t = 50)]
    pub max_rooms_per_socket: usize,

    /// Most rooms one `room.list` or `rooms.watch` answer carries.
    #[arg(long, env = "MESHI_ROOM_LIST_MAX", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1_000))]
    pub room_list_max: u32,

    /// Seconds between checks of the revoked-sessions record, which close
    /// sockets whose revocation the bus did not carry.
    #[arg(long, env = "MESHI_REVOCATION_CHECK_SECS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..=3_600))]
    pub revocation_check_secs: u64,

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

/// A trusted proxy: one address (a host route) or a CIDR block.
pub fn parse_proxy(value: &str) -> Result<ipnet::IpNet, String> {
    let value = value.trim();
    if let Ok(net) = value.parse::<ipnet::IpNet>() {
        return Ok(net);
    }
    value
        .parse::<std::net::IpAddr>()
        .map(ipnet::IpNet::from)
        .map_err(|_| format!("`{value}` is neither an IP address nor a CIDR block"))
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

/// A value that must never be printed: `Debug` shows only that it is set.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    fn parse(value: &str) -> Result<Self, String> {
        Ok(Secret(value.to_owned()))
    }

    /// The value itself, for the one place that uses it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Every setting production needs and did not get, named at once.
    #[error("production mode needs explicit settings; missing: {}", .0.join(", "))]
    MissingInProduction(Vec<&'static str>),
    #[error("{0}")]
    Invalid(String),
    #[error("cannot read {name} file {path}: {source}")]
    Unreadable {
        name: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{name} file {path} holds no usable PEM certificate: {reason}")]
    NotCertificates {
        name: &'static str,
        path: PathBuf,
        reason: String,
    },
}

/// The certificate authorities the backing services are checked against,
/// as read from their files: PEM, each checked to hold certificates.
#[derive(Clone, Default)]
pub struct TlsRoots {
    pub database: Option<Vec<u8>>,
    pub redis: Option<Vec<u8>>,
}

/// Where identity-provider JWTs are checked against, as configured.
#[derive(Clone, Default)]
pub struct JwtKeys {
    /// HS256 secret.
    pub secret: Option<Secret>,
    /// RS256 public key, PEM.
    pub public_key_pem: Option<Vec<u8>>,
}

impl JwtKeys {
    pub fn is_empty(&self) -> bool {
        self.secret.is_none() && self.public_key_pem.is_none()
    }
}

/// Names of the settings that turn single sign-on on, as one would write
/// them to say any one of them is missing.
const JWT_KEY_SETTINGS: &str =
    "MESHI_JWT_SECRET (or MESHI_JWT_SECRET_FILE, or MESHI_JWT_PUBLIC_KEY_FILE)";

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
        if self.jwt_secret.is_some() && self.jwt_secret_file.is_some() {
            return Err(ConfigError::Invalid(
                "set MESHI_JWT_SECRET or MESHI_JWT_SECRET_FILE, not both".into(),
            ));
        }
        if let Some(secret) = &self.jwt_secret {
            check_jwt_secret(secret)?;
        }
        if !is_cluster_name(&self.redis_prefix) {
            return Err(ConfigError::Invalid(
                "MESHI_REDIS_PREFIX must be 1-64 letters, digits, '.', '_' or '-'".into(),
            ));
        }
        if self
            .node_id
            .as_deref()
            .is_some_and(|id| !is_cluster_name(id))
        {
            return Err(ConfigError::Invalid(
                "MESHI_NODE_ID must be 1-64 letters, digits, '.', '_' or '-'".into(),
            ));
        }
        if self.database_ca_file.is_some() && !is_postgres_url(&self.database_url) {
            return Err(ConfigError::Invalid(
                "MESHI_DATABASE_CA_FILE is for a postgres:// MESHI_DATABASE_URL".into(),
            ));
        }
        // Below `require`, Postgres checks no certificate and may not even
        // encrypt: a CA named there would protect nothing while looking
        // as if it did.
        let names_database_ca = self.database_ca_file.is_some()
            || url_param(&self.database_url, ROOT_CERT_PARAMS).is_some();
        let checks_certificates = matches!(
            url_param(&self.database_url, &["sslmode", "ssl-mode"]),
            Some("require" | "verify-ca" | "verify-full")
        );
        if is_postgres_url(&self.database_url) && names_database_ca && !checks_certificates {
            return Err(ConfigError::Invalid(
                "a database CA (MESHI_DATABASE_CA_FILE or sslrootcert) needs sslmode=verify-full \
                 in MESHI_DATABASE_URL (or require / verify-ca); with another sslmode the \
                 certificate is not checked"
                    .into(),
            ));
        }
        // A CA file beside a plain `redis://` URL means the operator meant
        // TLS and would get none.
        if self.redis_ca_file.is_some()
            && !self
                .redis_url
                .as_deref()
                .is_some_and(|url| url.starts_with("rediss://"))
        {
            return Err(ConfigError::Invalid(
                "MESHI_REDIS_CA_FILE is for a rediss:// MESHI_REDIS_URL".into(),
            ));
        }
        if self.production {
            let mut missing = Vec::new();
            if !explicit_database_url {
                missing.push("MESHI_DATABASE_URL");
            }
            if !self.has_jwt_key() {
                missing.push(JWT_KEY_SETTINGS);
            }
            // Without an audience, a token the same provider minted for any
            // other service of the operator's would open a session here.
            if self.jwt_audience.is_none() {
                missing.push("MESHI_JWT_AUDIENCE");
            }
            if !missing.is_empty() {
                return Err(ConfigError::MissingInProduction(missing));
            }
        }
        Ok(())
    }

    /// What production runs with that it should not, to be logged loudly
    /// at start. These warn rather than refuse: each is safe for some
    /// deployments.
    pub fn production_warnings(&self) -> Vec<&'static str> {
        let mut warnings = Vec::new();
        if !self.production {
            return warnings;
        }
        if self.allowed_origins.is_empty() {
            // Credentials travel in `hello` and bearer headers, never in
            // cookies, so a foreign page cannot act as a user it has no
            // token for; it can still open anonymous sockets, and a client
            // that keeps tokens where pages can read them is exposed.
            warnings.push(
                "MESHI_ALLOWED_ORIGINS is unset: pages on every origin may open sockets; \
                 list the origins of your web clients",
            );
        }
        if is_postgres_url(&self.database_url)
            && url_param(&self.database_url, &["sslmode", "ssl-mode"]) != Some("verify-full")
        {
            warnings.push(
                "MESHI_DATABASE_URL has no sslmode=verify-full: the database's certificate is \
                 not checked against its host name, so another host may stand in for it",
            );
        }
        if self.metrics_addr.is_none() {
            warnings.push(
                "MESHI_METRICS_ADDR is unset: /metrics is served on MESHI_ADDR, to anyone \
                 who can reach it",
            );
        }
        warnings
    }

    /// Whether some identity-provider key is configured (not yet read).
    pub fn has_jwt_key(&self) -> bool {
        self.jwt_secret.is_some()
            || self.jwt_secret_file.is_some()
            || self.jwt_public_key_file.is_some()
    }

    /// Reads the identity-provider keys, from the environment or from the
    /// files it names. Empty when single sign-on is off.
    pub fn jwt_keys(&self) -> Result<JwtKeys, ConfigError> {
        let secret = match (&self.jwt_secret, &self.jwt_secret_file) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::Invalid(
                    "set MESHI_JWT_SECRET or MESHI_JWT_SECRET_FILE, not both".into(),
                ))
            }
            (Some(secret), None) => Some(secret.clone()),
            (None, Some(path)) => {
                let text = read_named_file("MESHI_JWT_SECRET_FILE", path)?;
                let text = String::from_utf8(text).map_err(|_| {
                    ConfigError::Invalid("MESHI_JWT_SECRET_FILE must hold UTF-8 text".into())
                })?;
                // Editors and `echo` end files with a newline nobody meant
                // as part of the secret.
                let value = text
                    .strip_suffix('\n')
                    .map(|t| t.strip_suffix('\r').unwrap_or(t))
                    .unwrap_or(&text);
                Some(Secret::new(value))
            }
            (None, None) => None,
        };
        if let Some(secret) = &secret {
            check_jwt_secret(secret)?;
        }
        let public_key_pem = self
            .jwt_public_key_file
            .as_deref()
            .map(|path| read_named_file("MESHI_JWT_PUBLIC_KEY_FILE", path))
            .transpose()?;
        Ok(JwtKeys {
            secret,
            public_key_pem,
        })
    }

    /// Reads the CA files of the database and of Redis, when set, and
    /// checks that each holds certificates, so a wrong file stops the
    /// start with its name rather than at the first connection.
    pub fn tls_roots(&self) -> Result<TlsRoots, ConfigError> {
        let read = |name: &'static str, path: &Option<PathBuf>| {
            path.as_deref()
                .map(|path| read_certificates(name, path))
                .transpose()
        };
        Ok(TlsRoots {
            database: read("MESHI_DATABASE_CA_FILE", &self.database_ca_file)?,
            redis: read("MESHI_REDIS_CA_FILE", &self.redis_ca_file)?,
        })
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

    pub fn jwt_leeway(&self) -> Duration {
        Duration::from_secs(self.jwt_leeway_secs)
    }

    /// Lifts the limits that count per client address or per user (auth
    /// attempts, connections and sockets per address or user, hosted rooms,
    /// room creation): a load test or a test suite drives thousands of
    /// users from one loopback address.
    pub fn lift_abuse_limits(&mut self) {
        self.auth_rate_per_min = 0;
        self.max_connections_per_addr = 0;
        self.max_sockets_per_user = 0;
        self.max_sockets_per_addr = 0;
        self.max_hosted_rooms = 0;
        self.room_create_per_min = 0;
        self.max_rooms_per_socket = 0;
    }

    /// Whether `peer` is a proxy whose `X-Forwarded-For` may be believed.
    pub fn is_trusted_proxy(&self, peer: std::net::IpAddr) -> bool {
        let peer = canonical_ip(peer);
        self.trusted_proxies.iter().any(|net| net.contains(&peer))
    }

    /// Whether the database URL was given explicitly, for production checks.
    pub fn database_url_from_env() -> bool {
        std::env::var_os("MESHI_DATABASE_URL").is_some()
    }
}

fn check_jwt_secret(secret: &Secret) -> Result<(), ConfigError> {
    if secret.expose().len() < MIN_JWT_SECRET_BYTES {
        return Err(ConfigError::Invalid(format!(
            "the JWT secret (MESHI_JWT_SECRET or MESHI_JWT_SECRET_FILE) must be at least \
             {MIN_JWT_SECRET_BYTES} bytes"
        )));
    }
    Ok(())
}

fn read_named_file(name: &'static str, path: &Path) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|source| ConfigError::Unreadable {
        name,
        path: path.to_owned(),
        source,
    })
}

/// The file at `path`, refused unless it is PEM with at least one
/// certificate and every certificate in it would be taken as a root.
fn read_certificates(name: &'static str, path: &Path) -> Result<Vec<u8>, ConfigError> {
    use rustls::pki_types::pem::PemObject;
    let pem = read_named_file(name, path)?;
    let refused = |reason: String| ConfigError::NotCertificates {
        name,
        path: path.to_owned(),
        reason,
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|err| refused(err.to_string()))?;
        roots.add(cert).map_err(|err| refused(err.to_string()))?;
    }
    if roots.is_empty() {
        return Err(refused("no CERTIFICATE block in it".into()));
    }
    Ok(pem)
}

fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres:") || url.starts_with("postgresql:")
}

/// An IPv4 peer seen through an IPv6 socket (`::ffff:a.b.c.d`) as the IPv4
/// address it is, so limits and proxy lists see one address, not two.
pub fn canonical_ip(ip: std::net::IpAddr) -> std::net::IpAddr {
    match ip {
        std::net::IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map_or(std::net::IpAddr::V6(v6), std::net::IpAddr::V4),
        v4 => v4,
    }
}

/// Names that go into Redis keys and channels unquoted.
pub fn is_cluster_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The scheme of a URL and nothing else, since its user part may hold a
/// password.
fn scheme_only(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, _)) => format!("{scheme}://<redacted>"),
        None => "<redacted>".into(),
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Destructured so a new field cannot be added without deciding
        // here whether it may be shown.
        let Config {
            addr,
            database_url,
            database_ca_file,
            redis_url,
            redis_ca_file,
            redis_prefix,
            node_id,
            node_ttl_ms,
            room_empty_grace_secs,
            room_history,
            max_frame_bytes,
            rate_per_sec,
            rate_burst,
            outbox_frames,
            heartbeat_ms,
            hello_timeout_ms,
            presence_grace_ms,
            session_ttl_secs,
            allowed_origins,
            admin_handles,
            jwt_secret,
            jwt_secret_file,
            jwt_public_key_file,
            jwt_issuer,
            jwt_audience,
            jwt_leeway_secs,
            reconnect_after_ms,
            drain_secs,
            metrics_addr,
            http_header_timeout_ms,
            http_body_timeout_ms,
            http_idle_timeout_ms,
            upgrade_timeout_ms,
            max_connections,
            max_connections_per_addr,
            auth_rate_per_min,
            trusted_proxies,
            hash_queue,
            max_sockets_per_user,
            max_sockets_per_addr,
            max_hosted_rooms,
            room_create_per_min,
            max_rooms_per_socket,
            room_list_max,
            revocation_check_secs,
            log_format,
            production,
        } = self;
        f.debug_struct("Config")
            .field("addr", addr)
            .field("database_url", &scheme_only(database_url))
            .field("database_ca_file", database_ca_file)
            .field("redis_url", &redis_url.as_deref().map(scheme_only))
            .field("redis_ca_file", redis_ca_file)
            .field("redis_prefix", redis_prefix)
            .field("node_id", node_id)
            .field("node_ttl_ms", node_ttl_ms)
            .field("room_empty_grace_secs", room_empty_grace_secs)
            .field("room_history", room_history)
            .field("max_frame_bytes", max_frame_bytes)
            .field("rate_per_sec", rate_per_sec)
            .field("rate_burst", rate_burst)
            .field("outbox_frames", outbox_frames)
            .field("heartbeat_ms", heartbeat_ms)
            .field("hello_timeout_ms", hello_timeout_ms)
            .field("presence_grace_ms", presence_grace_ms)
            .field("session_ttl_secs", session_ttl_secs)
            .field("allowed_origins", allowed_origins)
            .field("admin_handles", admin_handles)
            .field("jwt_secret", jwt_secret)
            .field("jwt_secret_file", jwt_secret_file)
            .field("jwt_public_key_file", jwt_public_key_file)
            .field("jwt_issuer", jwt_issuer)
            .field("jwt_audience", jwt_audience)
            .field("jwt_leeway_secs", jwt_leeway_secs)
            .field("reconnect_after_ms", reconnect_after_ms)
            .field("drain_secs", drain_secs)
            .field("metrics_addr", metrics_addr)
            .field("http_header_timeout_ms", http_header_timeout_ms)
            .field("http_body_timeout_ms", http_body_timeout_ms)
            .field("http_idle_timeout_ms", http_idle_timeout_ms)
            .field("upgrade_timeout_ms", upgrade_timeout_ms)
            .field("max_connections", max_connections)
            .field("max_connections_per_addr", max_connections_per_addr)
            .field("auth_rate_per_min", auth_rate_per_min)
            .field("trusted_proxies", trusted_proxies)
            .field("hash_queue", hash_queue)
            .field("max_sockets_per_user", max_sockets_per_user)
            .field("max_sockets_per_addr", max_sockets_per_addr)
            .field("max_hosted_rooms", max_hosted_rooms)
            .field("room_create_per_min", room_create_per_min)
            .field("max_rooms_per_socket", max_rooms_per_socket)
            .field("room_list_max", room_list_max)
            .field("revocation_check_secs", revocation_check_secs)
            .field("log_format", log_format)
            .field("production", production)
            .finish()
    }
}

/// The query parameters by which a Postgres URL names its root
/// certificates, as sqlx reads them.
pub(crate) const ROOT_CERT_PARAMS: &[&str] = &["sslrootcert", "ssl-root-cert", "ssl-ca"];

/// The value of the first of `keys` in the URL's query, if any.
pub(crate) fn url_param<'a>(url: &'a str, keys: &[&str]) -> Option<&'a str> {
    let (_, query) = url.split_once('?')?;
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| keys.contains(key))
        .map(|(_, value)| value)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "an-hs256-secret-of-at-least-32-bytes!";

    #[test]
    fn debug_shows_no_secret() {
        let mut config = Config::defaults();
        config.jwt_secret = Some(Secret::new(SECRET));
        config.database_url = "postgres://meshi:db-password@db.internal/meshi".into();
        config.redis_url = Some("redis://:redis-password@cache.internal".into());
        let shown = format!("{config:?}");
        for secret in [SECRET, "db-password", "redis-password"] {
            assert!(!shown.contains(secret), "{secret} shows in {shown}");
        }
        assert!(
            shown.contains("jwt_secret: Some(Secret(<redacted>))"),
            "{shown}"
        );
        assert!(shown.contains("postgres://<redacted>"), "{shown}");
    }

    #[test]
    fn production_names_every_missing_setting_at_once() {
        let mut config = Config::defaults();
        config.production = true;
        let err = config.validate(false).expect_err("refused");
        let text = err.to_string();
        for name in [
            "MESHI_DATABASE_URL",
            "MESHI_JWT_SECRET",
            "MESHI_JWT_SECRET_FILE",
            "MESHI_JWT_PUBLIC_KEY_FILE",
            "MESHI_JWT_AUDIENCE",
        ] {
            assert!(text.contains(name), "{name} missing from `{text}`");
        }
        config.jwt_public_key_file = Some("idp.pem".into());
        let text = config.validate(true).expect_err("refused").to_string();
        assert!(
            text.contains("MESHI_JWT_AUDIENCE") && !text.contains("MESHI_DATABASE_URL"),
            "{text}"
        );
        config.jwt_audience = Some("meshi".into());
        let text = config.validate(false).expect_err("refused").to_string();
        assert!(
            text.contains("MESHI_DATABASE_URL") && !text.contains("JWT"),
            "{text}"
        );
        assert!(config.validate(true).is_ok());
    }

    #[test]
    fn short_or_doubled_jwt_secrets_are_refused() {
        let mut config = Config::defaults();
        config.jwt_secret = Some(Secret::new("short"));
        assert!(matches!(
            config.validate(false),
            Err(ConfigError::Invalid(_))
        ));
        config.jwt_secret = Some(Secret::new(SECRET));
        assert!(config.validate(false).is_ok());
        config.jwt_secret_file = Some("secret.txt".into());
        assert!(matches!(
            config.validate(false),
            Err(ConfigError::Invalid(_))
        ));
    }

    #[test]
    fn the_secret_file_is_read_without_its_trailing_newline() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("jwt-secret");
        std::fs::write(&path, format!("{SECRET}\n")).expect("write the secret file");
        let mut config = Config::defaults();
        config.jwt_secret_file = Some(path);
        let keys = config.jwt_keys().expect("keys");
        assert_eq!(keys.secret.as_ref().map(Secret::expose), Some(SECRET));
        assert!(keys.public_key_pem.is_none());

        config.jwt_secret_file = Some(dir.path().join("missing"));
        let err = config.jwt_keys().err().expect("a missing file is an error");
        assert!(err.to_string().contains("MESHI_JWT_SECRET_FILE"), "{err}");
    }
}
