//! Argon2id password hashes. Hashing is deliberately slow, so it runs on the
//! blocking pool and never stalls the async workers.
//!
//! Each hash takes 19 MiB of memory, and an allocator keeps memory per
//! thread: run on the shared blocking pool, a burst of registrations spread
//! hashes over dozens of threads and the server grew by gigabytes that it
//! never gave back. Hashes are CPU-bound anyway, so they run on a few
//! dedicated threads, one per core, and wait their turn.

use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rand::rngs::OsRng;
use tokio::sync::oneshot;

use crate::error::{Error, Result};

type Job = Box<dyn FnOnce() + Send>;

fn hashing_threads() -> &'static Mutex<mpsc::Sender<Job>> {
    static JOBS: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();
    JOBS.get_or_init(|| {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        for n in 0..cores {
            let queue = queue.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("password-{n}"))
                .spawn(move || loop {
                    // The lock is held only to take the next job.
                    let job = match queue.lock() {
                        Ok(queue) => queue.recv(),
                        Err(_) => return,
                    };
                    match job {
                        Ok(job) => job(),
                        Err(_) => return,
                    }
                });
            if let Err(err) = spawned {
                tracing::error!(error = %err, "could not start a password hashing thread");
            }
        }
        Mutex::new(jobs)
    })
}

async fn on_a_slot<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    let (done, result) = oneshot::channel();
    let job: Job = Box::new(move || {
        let _ = done.send(work());
    });
    hashing_threads()
        .lock()
        .map_err(|_| Error::Unavailable("password hashing"))?
        .send(job)
        .map_err(|_| Error::Unavailable("password hashing"))?;
    result
        .await
        .map_err(|_| Error::Unavailable("password hashing"))?
}

pub async fn hash(password: String) -> Result<String> {
    on_a_slot(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| Error::internal(e.to_string()))
    })
    .await
}

pub async fn verify(password: String, stored: String) -> Result<bool> {
    on_a_slot(move || {
        let parsed = PasswordHash::new(&stored).map_err(|e| Error::internal(e.to_string()))?;
        Ok(Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok())
    })
    .await
}
