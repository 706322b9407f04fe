//! Argon2id password hashes. Hashing is deliberately slow, so it runs on the
//! blocking pool and never stalls the async workers.
//!
//! Each hash takes 19 MiB of memory. Left alone, a burst of registrations
//! would run one hash per blocking thread, and every thread's allocator
//! keeps its arena afterwards: memory grew by gigabytes under load and was
//! never returned. Hashes are CPU-bound anyway, so at most one per core
//! runs at a time; the rest wait their turn.

use std::sync::OnceLock;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rand::rngs::OsRng;
use tokio::sync::Semaphore;

use crate::error::{Error, Result};

fn hashing_slots() -> &'static Semaphore {
    static SLOTS: OnceLock<Semaphore> = OnceLock::new();
    SLOTS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Semaphore::new(cores)
    })
}

async fn on_a_slot<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    let _slot = hashing_slots()
        .acquire()
        .await
        .map_err(|_| Error::Unavailable("password hashing"))?;
    tokio::task::spawn_blocking(work)
        .await
        .map_err(Error::internal)?
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
