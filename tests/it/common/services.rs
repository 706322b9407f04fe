//! Redis and Postgres for the tests that need them.
//!
//! - [`shared_redis`]: the Redis every test may use, never stopped; keys
//!   of a test go under its own [`random_prefix`].
//! - [`ThrowawayRedis`] and [`ThrowawayPostgres`]: a server of one test
//!   alone, a child process on a free loopback port, so the test may stop
//!   it and start it again (killed on drop); either may speak TLS only,
//!   with the certificates of a [`TestCerts`].
//!
//! An unreachable shared service fails the test saying how to start it.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rand::Rng;
use tokio::time::{sleep, timeout, Instant};

use super::certs::TestCerts;
use super::free_port;

/// A random key prefix of the form `meshi-test-<16 hex digits>`.
pub fn random_prefix() -> String {
    format!("meshi-test-{:016x}", rand::thread_rng().gen::<u64>())
}

/// The shared Redis, checked to answer. Never stopped by any test.
pub async fn shared_redis() -> String {
    let url = meshi_testkit::redis_url().to_owned();
    if let Err(error) = redis_ping(&url).await {
        panic!(
            "these tests need Redis at {url} ({error}); start one with \
             `redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save \"\" \
             --appendonly no` (install it with `apt-get install redis-server`) or set \
             MESHI_TEST_REDIS_URL"
        );
    }
    url
}

/// One PING, bounded to a second.
async fn redis_ping(url: &str) -> Result<(), String> {
    let client = redis::Client::open(url).map_err(|e| e.to_string())?;
    client_ping(&client).await
}

async fn client_ping(client: &redis::Client) -> Result<(), String> {
    let attempt = async {
        let mut conn = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING").query_async::<String>(&mut conn).await
    };
    match timeout(Duration::from_secs(1), attempt).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err("no answer within 1 s".into()),
    }
}

/// A `redis-server` of this test alone, on a free loopback port.
pub struct ThrowawayRedis {
    pub port: u16,
    child: Option<Child>,
    tls: Option<RedisTls>,
    logs: tempfile::TempDir,
}

/// The files a TLS-only `redis-server` is started with.
struct RedisTls {
    cert: PathBuf,
    key: PathBuf,
    ca: PathBuf,
}

impl ThrowawayRedis {
    pub async fn start() -> Self {
        Self::start_configured(None).await
    }

    /// A server that speaks only TLS (`--port 0`), presenting the server
    /// certificate of `certs`; clients need no certificate of their own.
    /// Its URL is `rediss://`, and [`client`](Self::client) trusts `certs.ca`.
    pub async fn start_with_tls(certs: &TestCerts) -> Self {
        Self::start_configured(Some(RedisTls {
            cert: certs.server_cert.clone(),
            key: certs.server_key.clone(),
            ca: certs.ca.clone(),
        }))
        .await
    }

    async fn start_configured(tls: Option<RedisTls>) -> Self {
        match Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
        {
            Ok(_) => {}
            Err(e) => panic!(
                "this test runs its own Redis and needs `redis-server` on PATH ({e}); install \
                 it with `apt-get install redis-server`"
            ),
        }
        let mut redis = ThrowawayRedis {
            port: free_port(),
            child: None,
            tls,
            logs: tempfile::tempdir().expect("temp dir for the redis log"),
        };
        redis.start_again().await;
        redis
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// A client of this server, trusting the CA it was started with.
    pub fn client(&self) -> redis::Client {
        let ca = self
            .tls
            .as_ref()
            .map(|tls| std::fs::read(&tls.ca).expect("read the CA file"));
        meshi::bus::open_redis_client(&self.url(), ca.as_deref()).expect("a Redis client")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.logs.path().join("redis.log")).unwrap_or_default()
    }

    /// Kills the server (SIGKILL) and waits for it to be gone.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts an empty server on the same port and waits until it answers.
    pub async fn start_again(&mut self) {
        assert!(self.child.is_none(), "redis is already running");
        let deadline = Instant::now() + Duration::from_secs(10);
        let client = self.client();
        let port = self.port.to_string();
        loop {
            let mut command = Command::new("redis-server");
            match &self.tls {
                None => command.args(["--port", &port]),
                Some(tls) => command
                    .args(["--port", "0", "--tls-port", &port])
                    .arg("--tls-cert-file")
                    .arg(&tls.cert)
                    .arg("--tls-key-file")
                    .arg(&tls.key)
                    .arg("--tls-ca-cert-file")
                    .arg(&tls.ca)
                    .args(["--tls-auth-clients", "no"]),
            };
            let log = File::create(self.logs.path().join("redis.log")).expect("redis log");
            let mut child = command
                .args(["--bind", "127.0.0.1"])
                .args(["--save", ""])
                .args(["--appendonly", "no"])
                .args(["--daemonize", "no"])
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("clone the redis log"))
                .stderr(log)
                .spawn()
                .expect("spawn redis-server");
            // Wait for PING, or for the child to exit (port not yet free).
            loop {
                if client_ping(&client).await.is_ok() {
                    self.child = Some(child);
                    return;
                }
                if let Ok(Some(status)) = child.try_wait() {
                    assert!(
                        Instant::now() < deadline,
                        "redis-server on port {} keeps exiting ({status}); its log:\n{}",
                        self.port,
                        self.log()
                    );
                    break;
                }
                if Instant::now() >= deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "redis-server on port {} never answered PING; its log:\n{}",
                        self.port,
                        self.log()
                    );
                }
                sleep(Duration::from_millis(50)).await;
            }
            sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for ThrowawayRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Deletes every key under `<prefix>:` in the Redis at `url`, ignoring
/// failures (a throwaway Redis may already be gone).
pub fn delete_keys(url: &str, prefix: &str) {
    let Ok(client) = redis::Client::open(url) else {
        return;
    };
    let Ok(mut conn) = client.get_connection_with_timeout(Duration::from_secs(1)) else {
        return;
    };
    let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
    let mut cursor = 0u64;
    loop {
        let Ok((next, keys)) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}:*"))
            .arg("COUNT")
            .arg(1000)
            .query::<(u64, Vec<String>)>(&mut conn)
        else {
            return;
        };
        if !keys.is_empty() && redis::cmd("DEL").arg(&keys).query::<()>(&mut conn).is_err() {
            return;
        }
        if next == 0 {
            return;
        }
        cursor = next;
    }
}

// ---------------------------------------------------------------- Postgres

/// A Postgres server of this test alone (initdb into a temp dir, then the
/// `postgres` binary as a child on a free loopback port), so a test may
/// stop and restart it. `None` when the server binaries are not installed.
pub struct ThrowawayPostgres {
    pub port: u16,
    bin: PathBuf,
    dir: tempfile::TempDir,
    child: Option<Child>,
    as_postgres_user: bool,
}

impl ThrowawayPostgres {
    pub async fn start() -> Option<Self> {
        Self::start_configured(None).await
    }

    /// A server with `ssl = on`, presenting the server certificate of
    /// `certs`. It still takes plain connections too: what a client asks
    /// for (`sslmode`) decides.
    pub async fn start_with_tls(certs: &TestCerts) -> Option<Self> {
        Self::start_configured(Some(certs)).await
    }

    async fn start_configured(tls: Option<&TestCerts>) -> Option<Self> {
        let bin = meshi_testkit::postgres_binaries()?;
        let dir = tempfile::tempdir().expect("temp dir for Postgres");
        // Postgres refuses to run as root; run it as the `postgres` user then.
        let as_postgres_user = meshi_testkit::is_root();
        if as_postgres_user {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .expect("chown the Postgres temp dir");
            assert!(status.success(), "chown the Postgres temp dir to postgres");
        }
        let mut pg = ThrowawayPostgres {
            port: free_port(),
            bin,
            dir,
            child: None,
            as_postgres_user,
        };
        let mut initdb = pg.command("initdb");
        initdb
            .arg("-D")
            .arg(pg.data_dir())
            .args(["-U", "postgres", "-A", "trust", "--no-sync"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let out = initdb.output().expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if let Some(certs) = tls {
            pg.install_certificate(certs);
        }
        pg.start_again().await;
        Some(pg)
    }

    /// Copies the server certificate and key into the data directory and
    /// turns `ssl` on. Postgres refuses a key that others may read, or that
    /// is not owned by the user it runs as.
    fn install_certificate(&self, certs: &TestCerts) {
        use std::io::Write;
        use std::os::unix::fs::PermissionsExt;
        let data = self.data_dir();
        let cert = data.join("server.crt");
        let key = data.join("server.key");
        std::fs::copy(&certs.server_cert, &cert).expect("copy the server certificate");
        std::fs::copy(&certs.server_key, &key).expect("copy the server key");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))
            .expect("make the server key private");
        if self.as_postgres_user {
            let status = Command::new("chown")
                .arg("postgres:postgres")
                .arg(&cert)
                .arg(&key)
                .status()
                .expect("chown the server certificate and key");
            assert!(status.success(), "chown the server certificate and key");
        }
        let mut conf = std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .expect("open postgresql.conf");
        writeln!(
            conf,
            "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'"
        )
        .expect("turn ssl on in postgresql.conf");
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn command(&self, program: &str) -> Command {
        meshi_testkit::as_user(self.as_postgres_user, &self.bin.join(program))
    }

    pub fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    pub fn url_of(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Starts the server on its data directory and waits until it answers.
    pub async fn start_again(&mut self) {
        assert!(self.child.is_none(), "postgres is already running");
        let log = File::create(self.dir.path().join("postgres.log")).expect("postgres log");
        let mut command = self.command("postgres");
        command
            .arg("-D")
            .arg(self.data_dir())
            .args(["-p", &self.port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .arg("-c")
            .arg(format!(
                "unix_socket_directories={}",
                self.dir.path().display()
            ))
            .args(["-c", "fsync=off"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log"))
            .stderr(log);
        let mut child = command.spawn().expect("spawn postgres");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            use sqlx::Connection;
            if let Ok(Ok(conn)) = timeout(
                Duration::from_secs(2),
                sqlx::PgConnection::connect(&self.admin_url()),
            )
            .await
            {
                let _ = conn.close().await;
                self.child = Some(child);
                return;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "the throwaway postgres exited with {status}: {}",
                    std::fs::read_to_string(self.dir.path().join("postgres.log"))
                        .unwrap_or_default()
                );
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the throwaway postgres never accepted connections");
            }
            sleep(Duration::from_millis(100)).await;
        }
    }

    /// Fast shutdown (SIGINT): every connection is cut; waits for the exit.
    pub async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return;
            }
            sleep(Duration::from_millis(50)).await;
        }
    }

    /// Creates database `name` and returns its URL.
    pub async fn create_database(&self, name: &str) -> String {
        use sqlx::{Connection, Executor};
        let mut conn = sqlx::PgConnection::connect(&self.admin_url())
            .await
            .expect("connect to the throwaway postgres");
        conn.execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .expect("create a database");
        let _ = conn.close().await;
        self.url_of(name)
    }
}

impl Drop for ThrowawayPostgres {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-QUIT", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }
}
