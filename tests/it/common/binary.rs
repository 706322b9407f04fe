//! The `meshi` binary run as an operator runs it: a child process with its
//! own environment (none of the test runner's `MESHI_*`), its output in a
//! file or pipes the test reads afterwards.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use super::{free_port, Api};

/// How long a run of the binary may take before the test kills it and fails.
pub const PROCESS_TIMEOUT: Duration = Duration::from_secs(20);

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

/// Spawns `command` with stdin closed and stdout and stderr both going
/// to a new file at `log`.
pub fn spawn_logging_to(mut command: Command, log: &Path) -> Child {
    let file = File::create(log).expect("create the log file");
    command
        .stdin(Stdio::null())
        .stdout(file.try_clone().expect("clone the log file"))
        .stderr(file)
        .spawn()
        .expect("spawn the meshi binary")
}

/// Kills the child when dropped, so a failing test leaves no server behind.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reads a pipe line by line on a thread, keeping every line in `all` and
/// passing each on to `lines`.
pub fn collect_lines(
    pipe: impl Read + Send + 'static,
    lines: mpsc::Sender<String>,
    all: Arc<Mutex<String>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            if let Ok(mut all) = all.lock() {
                all.push_str(&line);
                all.push('\n');
            }
            let _ = lines.send(line);
        }
    })
}

/// How a run of the binary ended and what it wrote.
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub took: Duration,
}

/// Runs `command` to completion, killing it and failing the test when it
/// outlives [`PROCESS_TIMEOUT`]. Blocking: call it off the async workers.
pub fn run_with_timeout(mut command: Command) -> Finished {
    let started = Instant::now();
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the meshi binary");
    let mut child = KillOnDrop(child);
    // Both pipes are drained on threads so a chatty child never blocks on
    // a full pipe while it is polled.
    let (tx, _rx) = mpsc::channel();
    let stdout = Arc::new(Mutex::new(String::new()));
    let stderr = Arc::new(Mutex::new(String::new()));
    let out_reader = collect_lines(
        child.0.stdout.take().expect("stdout"),
        tx.clone(),
        stdout.clone(),
    );
    let err_reader = collect_lines(child.0.stderr.take().expect("stderr"), tx, stderr.clone());
    let text = |all: &Arc<Mutex<String>>| all.lock().map(|s| s.clone()).unwrap_or_default();
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("poll the child") {
            break status;
        }
        if started.elapsed() > PROCESS_TIMEOUT {
            drop(child);
            panic!(
                "{command:?} still ran after {PROCESS_TIMEOUT:?} and was killed\nstdout:\n{}\nstderr:\n{}",
                text(&stdout),
                text(&stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(25));
    };
    let _ = out_reader.join();
    let _ = err_reader.join();
    Finished {
        status,
        stdout: text(&stdout),
        stderr: text(&stderr),
        took: started.elapsed(),
    }
}

/// Asserts a quick refusal whose message names each of `named` and none of
/// `not_named`.
pub fn assert_refused(command: Command, named: &[&str], not_named: &[&str]) -> Finished {
    let done = run_with_timeout(command);
    assert!(
        !done.status.success(),
        "it must not start here, but exited {}\nstdout:\n{}\nstderr:\n{}",
        done.status,
        done.stdout,
        done.stderr
    );
    for name in named {
        assert!(
            done.stderr.contains(name),
            "stderr names {name}:\n{}",
            done.stderr
        );
    }
    for name in not_named {
        assert!(
            !done.stderr.contains(name),
            "stderr does not name {name}:\n{}",
            done.stderr
        );
    }
    assert!(
        done.took < Duration::from_secs(10),
        "the refusal is quick, took {:?}",
        done.took
    );
    done
}

/// A running `meshi` child on a free loopback port; it dereferences to
/// its REST client.
pub struct Running {
    api: Api,
    child: KillOnDrop,
    output: PathBuf,
}

impl std::ops::Deref for Running {
    type Target = Api;
    fn deref(&self) -> &Api {
        &self.api
    }
}

impl Running {
    /// Starts `command` on a free port (it must not set `MESHI_ADDR`) and
    /// waits until `/healthz` answers; panics with the output if it exits.
    pub async fn start(mut command: Command, dir: &Path) -> Running {
        let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let output = dir.join(format!("meshi-{}.log", addr.port()));
        command.env("MESHI_ADDR", addr.to_string());
        let child = spawn_logging_to(command, &output);
        let mut running = Running {
            api: Api::new(addr, reqwest::Client::new(), format!("meshi on {addr}")),
            child: KillOnDrop(child),
            output,
        };
        let deadline = Instant::now() + PROCESS_TIMEOUT;
        loop {
            if let Ok(Some(status)) = running.child.0.try_wait() {
                panic!("meshi exited with {status}:\n{}", running.output());
            }
            if running.healthy().await {
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

    /// Everything the process wrote so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.output).unwrap_or_default()
    }

    /// Stops the process with SIGTERM, as an operator would, and waits for
    /// it; returns its whole output.
    pub fn stop(mut self) -> String {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.0.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.0.try_wait() {
                return self.output();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.0.kill();
        let _ = self.child.0.wait();
        self.output()
    }
}
