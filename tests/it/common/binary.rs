//! The `meshi` binary run as an operator runs it: a child process with its
//! own environment (none of the test runner's `MESHI_*`), its output in a
//! file the test reads afterwards.

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::cluster::free_port;

/// A `meshi` command in `dir` with a clean environment.
pub fn command(dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_meshi"));
    command.args(args).current_dir(dir);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("MESHI_") {
            command.env_remove(&name);
        }
    }
    command
}

/// A running `meshi` child on a free loopback port.
pub struct Running {
    pub addr: SocketAddr,
    child: Child,
    output: PathBuf,
}

impl Running {
    /// Starts `command` on a free port (it must not set `MESHI_ADDR`) and
    /// waits until `/healthz` answers; panics with the output if it exits.
    pub async fn start(mut command: Command, dir: &Path) -> Running {
        let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let output = dir.join(format!("meshi-{}.log", addr.port()));
        let file = File::create(&output).expect("create the output file");
        command
            .env("MESHI_ADDR", addr.to_string())
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("clone the output file"))
            .stderr(file);
        let child = command.spawn().expect("spawn the meshi binary");
        let mut running = Running {
            addr,
            child,
            output,
        };
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = running.child.try_wait() {
                panic!("meshi exited with {status}:\n{}", running.output());
            }
            let healthy = client
                .get(format!("http://{addr}/healthz"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if healthy {
                return running;
            }
            assert!(
                Instant::now() < deadline,
                "meshi never became healthy:\n{}",
                running.output()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Everything the process wrote so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.output).unwrap_or_default()
    }

    /// Stops the process with SIGTERM, as an operator would, and waits for
    /// it; returns its whole output.
    pub fn stop(mut self) -> String {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return self.output();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.output()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `command` to its end (at most 20 s) and returns whether it
/// succeeded and what it wrote to stdout and stderr.
pub fn run(mut command: Command) -> (bool, String) {
    command.stdin(Stdio::null());
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the meshi binary");
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let out = child.wait_with_output().expect("collect the output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}
