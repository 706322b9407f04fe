//! Who is calling: accounts with argon2 passwords and opaque session
//! tokens. A token is 32 random bytes shown once to its owner; the database
//! keeps only its SHA-256, so a leaked table opens no session. Tokens are
//! never logged.
//!
//! What a caller may do beyond their own data is decided in [`roles`].

mod password;
pub mod roles;
mod token;

use std::sync::Arc;

use crate::clock::now_ms;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::store::{NewAudit, NewUser, Store, UserRow, AUDIT_ROLE_CHANGE};
use roles::Role;

/// An authenticated caller: the user and the session their token belongs to.
#[derive(Debug, Clone)]
pub struct Identity {
    pub user: UserRow,
    pub session_id: i64,
    /// Unix milliseconds after which the token no longer works.
    pub expires_at: i64,
}

impl Identity {
    pub fn role(&self) -> Role {
        Role::from_stored(&self.user.role)
    }
}

/// A freshly issued token and the identity it opens.
pub struct Issued {
    pub token: String,
    pub identity: Identity,
}

#[derive(Clone)]
pub struct Accounts {
    store: Store,
    config: Arc<Config>,
}

impl Accounts {
    pub fn new(store: Store, config: Arc<Config>) -> Self {
        Accounts { store, config }
    }

    pub async fn register(
        &self,
        handle: &str,
        password: &str,
        display_name: &str,
    ) -> Result<Issued> {
        validate_handle(handle)?;
        validate_password(password)?;
        validate_display_name(display_name)?;
        let hash = password::hash(password.to_owned()).await?;
        let mut user = self
            .store
            .create_user(NewUser {
                handle,
                display_name,
                password_hash: Some(&hash),
                external_sub: None,
                role: Role::Member.as_str(),
                now: now_ms(),
            })
            .await?;
        // Created as a member and promoted through the audited path, so a
        // configured admin is recorded like any other role change, and a
        // failed record leaves a member rather than an unrecorded admin.
        if self.config.is_admin_handle(handle) {
            self.promote_configured_admin(&mut user).await?;
        }
        self.issue(user).await
    }

    pub async fn login(&self, handle: &str, password: &str) -> Result<Issued> {
        const REFUSED: Error = Error::Unauthenticated("wrong handle or password");
        let Some((mut user, Some(hash))) = self.store.user_with_password(handle).await? else {
            return Err(REFUSED);
        };
        if !password::verify(password.to_owned(), hash).await? {
            return Err(REFUSED);
        }
        if self.config.is_admin_handle(&user.handle) && Role::from_stored(&user.role) != Role::Admin
        {
            self.promote_configured_admin(&mut user).await?;
        }
        self.issue(user).await
    }

    /// Makes a user listed in `MESHI_ADMIN_HANDLES` an admin, recording
    /// that the configuration, not a person, did it.
    async fn promote_configured_admin(&self, user: &mut UserRow) -> Result<()> {
        let target = format!("user:{}", user.id);
        let changed = self
            .store
            .change_role(
                user.id,
                Role::Admin.as_str(),
                NewAudit {
                    actor_id: None,
                    action: AUDIT_ROLE_CHANGE,
                    target: &target,
                    data: r#"{"source":"MESHI_ADMIN_HANDLES"}"#,
                    now: now_ms(),
                },
            )
            .await?;
        if changed.is_none() {
            return Err(Error::internal("a user vanished while being promoted"));
        }
        tracing::info!(user_id = user.id, "admin named by MESHI_ADMIN_HANDLES");
        user.role = Role::Admin.as_str().to_owned();
        Ok(())
    }

    /// The identity behind a bearer token, or `unauthenticated`.
    pub async fn authenticate(&self, token: &str) -> Result<Identity> {
        if token.is_empty() || token.len() > 4096 {
            return Err(Error::Unauthenticated("invalid token"));
        }
        let found = self
            .store
            .live_session(&token::digest(token), now_ms())
            .await?;
        let (session, user) = found.ok_or(Error::Unauthenticated("invalid or expired token"))?;
        Ok(Identity {
            user,
            session_id: session.id,
            expires_at: session.expires_at,
        })
    }

    pub async fn revoke(&self, session_id: i64) -> Result<()> {
        self.store.revoke_session(session_id, now_ms()).await?;
        Ok(())
    }

    async fn issue(&self, user: UserRow) -> Result<Issued> {
        let (token, digest) = token::generate();
        let now = now_ms();
        let ttl_ms =
            i64::try_from(self.config.session_ttl_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        let session = self
            .store
            .create_session(user.id, &digest, now, now.saturating_add(ttl_ms))
            .await?;
        Ok(Issued {
            token,
            identity: Identity {
                user,
                session_id: session.id,
                expires_at: session.expires_at,
            },
        })
    }
}

pub fn validate_handle(handle: &str) -> Result<()> {
    let ok_chars = handle
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !(3..=32).contains(&handle.len()) || !ok_chars {
        return Err(Error::bad(
            "handle",
            "must be 3-32 characters of a-z, 0-9 and _",
        ));
    }
    Ok(())
}

pub fn validate_password(password: &str) -> Result<()> {
    if !(8..=128).contains(&password.chars().count()) {
        return Err(Error::bad("password", "must be 8-128 characters"));
    }
    Ok(())
}

pub fn validate_display_name(name: &str) -> Result<()> {
    let len = name.trim().chars().count();
    if !(1..=50).contains(&len) || name.chars().count() > 50 {
        return Err(Error::bad("display_name", "must be 1-50 characters"));
    }
    Ok(())
}
