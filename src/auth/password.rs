//! Argon2id password hashes. Hashing is deliberately slow, so it runs on the
//! blocking pool and never stalls the async workers.
//!
//! Each hash takes 19 MiB of memory, and an allocator keeps memory per
//! thread: run on the shared blocking pool, a burst of registrations spread
//! hashes over dozens of threads and the server grew by gigabytes that it
//! never gave back. Hashes are CPU-bound anyway, so they run on a few
//! dedicated threads, one per core, and wait their turn.

use std::sync::atomic::{AtomicUsize, Ordering};
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

/// The hashing threads' front door: at most `limit` hashes queued or
/// running at once, so a burst of registrations or logins answers 503 at
/// once rather than waiting in a backlog that only grows.
#[derive(Clone)]
pub struct Hasher {
    in_flight: Arc<AtomicUsize>,
    /// 0 means no limit.
    limit: usize,
}

/// Gives the slot back however the job ends.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Hasher {
    pub fn new(limit: usize) -> Self {
        let hasher = Hasher {
            in_flight: Arc::default(),
            limit,
        };
        // The stand-in hash is made now, so the first login for an unknown
        // handle costs no more than any other.
        let job: Job = Box::new(|| {
            stand_in_hash();
        });
        if let Ok(jobs) = hashing_threads().lock() {
            let _ = jobs.send(job);
        }
        hasher
    }

    pub async fn hash(&self, password: String) -> Result<String> {
        self.on_a_slot(move || {
            let salt = SaltString::generate(&mut OsRng);
            Argon2::default()
                .hash_password(password.as_bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(|e| Error::internal(e.to_string()))
        })
        .await
    }

    /// Whether `password` matches `stored`. With no stored hash (no such
    /// account, or one that signs on through a provider) it checks against
    /// a stand-in and says no, at the cost of a real check: how long a
    /// login takes must not tell who has an account.
    pub async fn verify(&self, password: String, stored: Option<String>) -> Result<bool> {
        self.on_a_slot(move || {
            let Some(stored) = stored else {
                let stand_in = PasswordHash::new(stand_in_hash())
                    .map_err(|e| Error::internal(e.to_string()))?;
                let _ = Argon2::default().verify_password(password.as_bytes(), &stand_in);
                return Ok(false);
            };
            let parsed = PasswordHash::new(&stored).map_err(|e| Error::internal(e.to_string()))?;
            Ok(Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok())
        })
        .await
    }

    async fn on_a_slot<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T> + Send + 'static,
    ) -> Result<T> {
        const BUSY: Error = Error::Unavailable("password hashing");
        let taken = self.in_flight.fetch_add(1, Ordering::AcqRel);
        let slot = Slot(self.in_flight.clone());
        if self.limit != 0 && taken >= self.limit {
            return Err(BUSY);
        }
        let (done, result) = oneshot::channel();
        let job: Job = Box::new(move || {
            let _slot = slot;
            let _ = done.send(work());
        });
        hashing_threads()
            .lock()
            .map_err(|_| BUSY)?
            .send(job)
            .map_err(|_| BUSY)?;
        result.await.map_err(|_| BUSY)?
    }
}

/// A hash of a random password, made once, that unknown handles are
/// checked against.
fn stand_in_hash() -> &'static str {
    static STAND_IN: OnceLock<String> = OnceLock::new();
    STAND_IN.get_or_init(|| {
        let salt = SaltString::generate(&mut OsRng);
        let password = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_str().as_bytes(), &salt)
            .map(|h| h.to_string())
            .unwrap_or_default()
    })
}
