//! The Postgres and Redis every test of the workspace shares, found or
//! started once per test process:
//!
//! 1. the server named by `MESHI_TEST_POSTGRES_URL` / `MESHI_TEST_REDIS_URL`;
//! 2. else the one on the standard local port (5432, 6379), if it answers
//!    (and, for Postgres, lets the `postgres` user in without a password);
//! 3. else a server of this process's own on a free loopback port, from the
//!    distribution's binaries, stopped (and its files removed) by a small
//!    watchdog once the test process has exited.
//!
//! So `cargo test` needs the packages installed, not the services running.
//! Where a binary is missing, the panic says which package to install.
//! Tests that kill or restart a service start their own instead (the
//! cluster harness's throwaway servers); these shared ones never stop
//! while tests run.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const LOCAL_POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/postgres";
const LOCAL_REDIS: &str = "redis://127.0.0.1:6379";
const STARTS_WITHIN: Duration = Duration::from_secs(60);

/// A Postgres URL whose user may create databases (trust auth).
pub fn postgres_admin_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        if let Ok(url) = std::env::var("MESHI_TEST_POSTGRES_URL") {
            return url;
        }
        if answers("127.0.0.1:5432".parse().unwrap()) && trusts_postgres_user(5432) {
            return LOCAL_POSTGRES.to_owned();
        }
        start_postgres()
    })
}

/// A Redis URL; tests keep apart by key prefix.
pub fn redis_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        if let Ok(url) = std::env::var("MESHI_TEST_REDIS_URL") {
            return url;
        }
        if redis_answers(6379) {
            return LOCAL_REDIS.to_owned();
        }
        start_redis()
    })
}

/// The newest `/usr/lib/postgresql/<version>/bin` holding `initdb` and
/// `postgres`, as the distribution's `postgresql` package installs them.
pub fn postgres_binaries() -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.path().join("bin"))
        .filter(|bin| bin.join("initdb").exists() && bin.join("postgres").exists())
        .collect();
    found.sort();
    found.pop()
}

/// A free port on 127.0.0.1 (free when asked; taken by whoever binds it first).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("bind an ephemeral port")
}

/// Whether this process runs as root, which Postgres refuses to run as.
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
        .unwrap_or(false)
}

fn answers(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
}

/// Whether the `postgres` user gets in without a password, as the tests
/// need; a distribution's fresh cluster asks for one over TCP. Without
/// `psql` to ask, the server is taken as it is.
fn trusts_postgres_user(port: u16) -> bool {
    let port = port.to_string();
    let asked = Command::new("psql")
        .args([
            "-w",
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-U",
            "postgres",
            "-d",
            "postgres",
        ])
        .args(["-Atc", "select 1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    match asked {
        Ok(status) => status.success(),
        Err(_) => true,
    }
}

fn redis_answers(port: u16) -> bool {
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let mut reply = [0u8; 5];
    stream.write_all(b"PING\r\n").is_ok()
        && stream.read_exact(&mut reply).is_ok()
        && &reply == b"+PONG"
}

fn start_redis() -> String {
    if Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_err()
    {
        panic!(
            "no Redis answers at {LOCAL_REDIS} and `redis-server` is not installed to start one: \
             install it (`apt-get install redis-server`), start one on 6379, or set \
             MESHI_TEST_REDIS_URL"
        );
    }
    let dir = kept_dir("meshi-test-redis");
    let port = free_port();
    watched(
        &dir,
        Command::new("redis-server").args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            &dir.display().to_string(),
        ]),
    );
    wait_for(&dir, "redis-server", || redis_answers(port));
    format!("redis://127.0.0.1:{port}")
}

fn start_postgres() -> String {
    let Some(bin) = postgres_binaries() else {
        panic!(
            "no Postgres answers at {LOCAL_POSTGRES} and none is installed to start one \
             (initdb and postgres under /usr/lib/postgresql/<version>/bin): install it \
             (`apt-get install postgresql`), start one on 5432, or set MESHI_TEST_POSTGRES_URL"
        );
    };
    let dir = kept_dir("meshi-test-postgres");
    let as_postgres = is_root();
    if as_postgres {
        let chowned = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(&dir)
            .status()
            .is_ok_and(|status| status.success());
        assert!(chowned, "chown {} to postgres", dir.display());
    }
    let data = dir.join("data");
    let initdb = as_user(as_postgres, &bin.join("initdb"))
        .arg("-D")
        .arg(&data)
        .args(["-U", "postgres", "-A", "trust", "--no-sync"])
        .stdout(Stdio::null())
        .output()
        .expect("run initdb");
    assert!(
        initdb.status.success(),
        "initdb failed: {}",
        String::from_utf8_lossy(&initdb.stderr)
    );
    let port = free_port();
    watched(
        &dir,
        as_user(as_postgres, &bin.join("postgres"))
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
            .arg("-c")
            .arg(format!("unix_socket_directories={}", dir.display())),
    );
    let ready = bin.join("pg_isready");
    wait_for(&dir, "postgres", || {
        Command::new(&ready)
            .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string()])
            .status()
            .is_ok_and(|status| status.success())
    });
    format!("postgres://postgres@127.0.0.1:{port}/postgres")
}

/// `program`, run as the `postgres` user when `as_postgres` (setpriv execs,
/// so the process is the program itself, and its pid the server's).
pub fn as_user(as_postgres: bool, program: &Path) -> Command {
    if !as_postgres {
        return Command::new(program);
    }
    let mut command = Command::new("setpriv");
    command
        .args([
            "--reuid=postgres",
            "--regid=postgres",
            "--init-groups",
            "--",
        ])
        .arg(program);
    command
}

/// A directory that outlives this process's destructors: the watchdog
/// removes it.
fn kept_dir(prefix: &str) -> PathBuf {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("a temp dir")
        .keep()
}

/// Runs `server` under a shell that stops it (SIGINT: Postgres's fast
/// shutdown, Redis's clean one) and removes `dir` once this process has
/// gone, however it ends: statics are never dropped, and a test process
/// may be killed.
fn watched(dir: &Path, server: &mut Command) {
    let program = server.get_program().to_owned();
    let args: Vec<_> = server.get_args().map(|arg| arg.to_owned()).collect();
    let log = std::fs::File::create(dir.join("server.log")).expect("a server log");
    let script = r#"
parent=$1; dir=$2; shift 2
"$@" &
child=$!
while kill -0 "$parent" 2>/dev/null && kill -0 "$child" 2>/dev/null; do sleep 1; done
kill -INT "$child" 2>/dev/null
wait "$child"
rm -rf "$dir"
"#;
    let mut watchdog = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg("watchdog")
        .arg(std::process::id().to_string())
        .arg(dir)
        .arg(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("clone the log"))
        .stderr(log)
        .spawn()
        .expect("start the watchdog shell");
    // Reaps the shell should the server die while tests still run.
    std::thread::spawn(move || watchdog.wait());
}

fn wait_for(dir: &Path, what: &str, ready: impl Fn() -> bool) {
    let deadline = Instant::now() + STARTS_WITHIN;
    while !ready() {
        if Instant::now() >= deadline {
            panic!(
                "the tests' own {what} did not come up within {STARTS_WITHIN:?}; its log: {}",
                std::fs::read_to_string(dir.join("server.log")).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
