//! Who is calling: accounts with argon2 passwords and opaque session
//! tokens, and users of an external identity provider who present its
//! JWTs. A session token is 32 random bytes shown once to its owner; the
//! database keeps only its SHA-256, so a leaked table opens no session.
//! No token of either kind is ever logged.
//!
//! What a caller may do beyond their own data is decided in [`roles`].

pub mod jwt;
pub mod limits;
mod password;
pub mod revocation;
pub mod roles;
mod token;

use std::net::IpAddr;
use std::sync::Arc;

use crate::clock::now_ms;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::store::{NewAudit, NewUser, Store, StoreError, TokenLookup, UserRow, AUDIT_ROLE_CHANGE};
use jwt::JwtVerifier;
use limits::AuthLimits;
use password::Hasher;
use roles::Role;

/// Longest bearer token looked at. Identity-provider JWTs carrying many
/// claims run to a few KiB; anything longer is refused unread.
const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// An authenticated caller: the user and what vouched for them.
#[derive(Debug, Clone)]
pub struct Identity {
    pub user: UserRow,
    pub credential: Credential,
    /// Unix milliseconds after which the token no longer works.
    pub expires_at: i64,
}

/// What a caller authenticated with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// A session token of ours, stored (hashed) under this id; it can be
    /// revoked.
    Session(i64),
    /// An identity-provider JWT. Nothing is stored for it, so there is
    /// nothing to revoke: it ends at its `exp`. The fingerprint names it
    /// without revealing it.
    Jwt { fingerprint: String },
}

impl Identity {
    /// The stored session behind this identity, if it has one.
    pub fn session_id(&self) -> Option<i64> {
        match self.credential {
            Credential::Session(id) => Some(id),
            Credential::Jwt { .. } => None,
        }
    }

    /// The session id `hello` reports: the stored session's id, or the
    /// JWT's fingerprint.
    pub fn session_label(&self) -> String {
        match &self.credential {
            Credential::Session(id) => id.to_string(),
            Credential::Jwt { fingerprint } => fingerprint.clone(),
        }
    }

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
    /// `None` when no identity provider is configured: JWTs are refused.
    jwt: Option<Arc<JwtVerifier>>,
    hasher: Hasher,
    limits: Arc<AuthLimits>,
}

/// Numbered handle suffixes tried before random ones.
const NUMBERED_SUFFIXES: std::ops::RangeInclusive<u32> = 2..=9;
/// Random handle suffixes tried before giving up.
const RANDOM_SUFFIX_TRIES: usize = 8;

impl Accounts {
    pub fn new(store: Store, config: Arc<Config>, jwt: Option<JwtVerifier>) -> Self {
        Accounts {
            hasher: Hasher::new(config.hash_queue),
            limits: Arc::new(AuthLimits::new(config.auth_rate_per_min)),
            store,
            config,
            jwt: jwt.map(Arc::new),
        }
    }

    /// A new password account for a client at `addr`. Handles listed in
    /// `MESHI_ADMIN_HANDLES` are refused: they are made from the command
    /// line ([`Accounts::create_admin`]), or the first to register one would
    /// be admin.
    pub async fn register(
        &self,
        addr: IpAddr,
        handle: &str,
        password: &str,
        display_name: &str,
    ) -> Result<Issued> {
        self.limits.attempt(addr, handle)?;
        validate_handle(handle)?;
        validate_password(password)?;
        validate_display_name(display_name)?;
        if self.config.is_admin_handle(handle) {
            return Err(Error::Conflict(
                "handle is reserved for an administrator".into(),
            ));
        }
        let user = self.create_member(handle, password, display_name).await?;
        self.issue(user).await
    }

    /// A new session for a client at `addr` that knows the password. An
    /// unknown handle costs a full password check too.
    pub async fn login(&self, addr: IpAddr, handle: &str, password: &str) -> Result<Issued> {
        const REFUSED: Error = Error::Unauthenticated("wrong handle or password");
        self.limits.attempt(addr, handle)?;
        let (user, hash) = match self.store.user_with_password(handle).await? {
            Some((user, hash)) => (Some(user), hash),
            None => (None, None),
        };
        if !self.hasher.verify(password.to_owned(), hash).await? {
            return Err(REFUSED);
        }
        let user = user.ok_or(REFUSED)?;
        // Only after the password: a suspension is no one else's business.
        self.refuse_suspended(user.id).await?;
        self.issue(user).await
    }

    /// Checks the caller's current password, rate-limited like a login so
    /// a stolen session cannot guess it. An account without a password
    /// (it signs in through an identity provider) has none to check.
    pub async fn check_password(
        &self,
        addr: IpAddr,
        identity: &Identity,
        password: &str,
        field: &'static str,
    ) -> Result<()> {
        self.limits.attempt(addr, &identity.user.handle)?;
        let hash = self
            .store
            .user_with_password(&identity.user.handle)
            .await?
            .and_then(|(_, hash)| hash)
            .ok_or_else(|| {
                Error::bad(
                    field,
                    "this account signs in through its identity provider and has no password",
                )
            })?;
        if self.hasher.verify(password.to_owned(), Some(hash)).await? {
            Ok(())
        } else {
            Err(Error::Forbidden("the password is wrong"))
        }
    }

    /// Whether the caller's account has a password (not only an identity
    /// provider's sign-on).
    pub async fn has_password(&self, identity: &Identity) -> Result<bool> {
        Ok(self
            .store
            .user_with_password(&identity.user.handle)
            .await?
            .is_some_and(|(_, hash)| hash.is_some()))
    }

    /// Changes the caller's password once the current one checks out;
    /// every other session ends. Returns the sessions ended, whose sockets
    /// the caller closes.
    pub async fn change_password(
        &self,
        addr: IpAddr,
        identity: &Identity,
        current: &str,
        new: &str,
    ) -> Result<Vec<i64>> {
        validate_password(new)
            .map_err(|_| Error::bad("new_password", "must be 8-128 characters"))?;
        self.check_password(addr, identity, current, "current_password")
            .await?;
        let hash = self.hasher.hash(new.to_owned()).await?;
        Ok(self
            .store
            .change_password(identity.user.id, &hash, identity.session_id(), now_ms())
            .await?)
    }

    /// `forbidden` while `user_id` is suspended.
    async fn refuse_suspended(&self, user_id: i64) -> Result<()> {
        match self.store.suspension_of(user_id, now_ms()).await? {
            Some(until) => Err(Error::Suspended { until }),
            None => Ok(()),
        }
    }

    /// Creates `handle` as an admin, from the command line. A handle that
    /// is taken is refused, not promoted: whoever registered it before it
    /// was listed is not to become admin by accident.
    pub async fn create_admin(
        &self,
        handle: &str,
        password: &str,
        display_name: Option<&str>,
    ) -> Result<UserRow> {
        validate_handle(handle)?;
        validate_password(password)?;
        let display_name = display_name.unwrap_or(handle);
        validate_display_name(display_name)?;
        let user = self.create_member(handle, password, display_name).await?;
        // Created as a member and promoted through the audited path, so the
        // first admin is on the record like every later role change.
        self.record_admin(user).await
    }

    /// Makes the existing account `handle` an admin, from the command line.
    /// `None` when it already is one.
    pub async fn promote_to_admin(&self, handle: &str) -> Result<Option<UserRow>> {
        let (user, _) = self
            .store
            .user_with_password(handle)
            .await?
            .ok_or(Error::NotFound("user"))?;
        if Role::from_stored(&user.role) == Role::Admin {
            return Ok(None);
        }
        self.record_admin(user).await.map(Some)
    }

    /// A new password account with the member role; the caller has
    /// validated its fields.
    async fn create_member(
        &self,
        handle: &str,
        password: &str,
        display_name: &str,
    ) -> Result<UserRow> {
        let hash = self.hasher.hash(password.to_owned()).await?;
        Ok(self
            .store
            .create_user(NewUser {
                handle,
                display_name: display_name.trim(),
                password_hash: Some(&hash),
                external_sub: None,
                role: Role::Member.as_str(),
                now: now_ms(),
            })
            .await?)
    }

    /// Makes `user` an admin, on the record as done by no person.
    async fn record_admin(&self, mut user: UserRow) -> Result<UserRow> {
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
                    data: r#"{"source":"command line"}"#,
                    now: now_ms(),
                },
            )
            .await?;
        if changed.is_none() {
            return Err(Error::internal("a user vanished while being promoted"));
        }
        tracing::info!(user_id = user.id, "admin made from the command line");
        user.role = Role::Admin.as_str().to_owned();
        Ok(user)
    }

    /// The identity behind a bearer token (a session token or an
    /// identity-provider JWT), or `unauthenticated`.
    pub async fn authenticate(&self, token: &str) -> Result<Identity> {
        if token.is_empty() || token.len() > MAX_TOKEN_BYTES {
            return Err(Error::Unauthenticated("invalid token"));
        }
        if jwt::looks_like_jwt(token) {
            return self.authenticate_jwt(token).await;
        }
        let found = self
            .store
            .session_for_token(&token::digest(token), now_ms())
            .await?;
        let (session, user) = match found {
            TokenLookup::Live(session, user) => (session, user),
            TokenLookup::Suspended { until } => return Err(Error::Suspended { until }),
            TokenLookup::Ended => return Err(Error::Unauthenticated("invalid or expired token")),
        };
        Ok(Identity {
            user,
            credential: Credential::Session(session.id),
            expires_at: session.expires_at,
        })
    }

    async fn authenticate_jwt(&self, token: &str) -> Result<Identity> {
        let Some(verifier) = &self.jwt else {
            return Err(Error::Unauthenticated("invalid token"));
        };
        let verified = verifier.verify(token).map_err(|refusal| {
            tracing::debug!(?refusal, "identity-provider token refused");
            Error::Unauthenticated(refusal.message())
        })?;
        let user = self.external_user(&verified).await?;
        // Its provider still vouches for it, but the account is gone; a
        // token must not bring it back or open a new one in its place.
        if user.handle.starts_with(crate::store::DELETED_HANDLE_PREFIX) {
            return Err(Error::Unauthenticated("this account was deleted"));
        }
        // Nothing stored for a JWT can be revoked, so its user's
        // suspension is looked at on every use.
        self.refuse_suspended(user.id).await?;
        Ok(Identity {
            user,
            credential: Credential::Jwt {
                fingerprint: jwt::fingerprint(token),
            },
            expires_at: verified.expires_at,
        })
    }

    /// The user an identity-provider subject maps to, created on first
    /// sight. Two first sign-ons of one subject may race: the loser's
    /// insert hits the unique `external_sub` and it reads the winner's row.
    async fn external_user(&self, verified: &jwt::Verified) -> Result<UserRow> {
        let subject = verified.subject.as_str();
        if let Some(user) = self.store.user_by_external_sub(subject).await? {
            return Ok(user);
        }
        let base = jwt::handle_base(verified.username.as_deref().unwrap_or(subject));
        let display_name = verified.name.as_deref().and_then(jwt::display_name);
        for handle in handle_candidates(&base) {
            // Listed admin handles are kept for the accounts the operator
            // makes from the command line.
            if self.config.is_admin_handle(&handle) {
                continue;
            }
            let created = self
                .store
                .create_user(NewUser {
                    handle: &handle,
                    display_name: display_name.as_deref().unwrap_or(&handle),
                    password_hash: None,
                    external_sub: Some(subject),
                    role: Role::Member.as_str(),
                    now: now_ms(),
                })
                .await;
            match created {
                Ok(user) => {
                    tracing::info!(user_id = user.id, "user created on first sign-on");
                    return Ok(user);
                }
                Err(StoreError::Conflict(_)) => {
                    if let Some(user) = self.store.user_by_external_sub(subject).await? {
                        return Ok(user);
                    }
                }
                Err(other) => return Err(other.into()),
            }
        }
        Err(Error::Conflict(
            "no free handle could be derived for this identity".into(),
        ))
    }

    /// Whether the stored session behind `identity` has ended since it was
    /// checked (revoked, or gone). A JWT has nothing stored and never has.
    pub async fn has_ended(&self, identity: &Identity) -> Result<bool> {
        let Some(session_id) = identity.session_id() else {
            return Ok(false);
        };
        Ok(!self.store.ended_sessions(&[session_id]).await?.is_empty())
    }

    /// Revokes a stored session. A JWT identity has none: the provider
    /// alone can end it, so there is nothing to do here.
    pub async fn revoke(&self, identity: &Identity) -> Result<()> {
        if let Some(session_id) = identity.session_id() {
            self.store.revoke_session(session_id, now_ms()).await?;
        }
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
                credential: Credential::Session(session.id),
                expires_at: session.expires_at,
            },
        })
    }
}

/// Handles to try for a new provider user: the base, numbered variants,
/// then random ones, which a crowd sharing one name cannot exhaust.
fn handle_candidates(base: &str) -> impl Iterator<Item = String> + '_ {
    let numbered = NUMBERED_SUFFIXES.map(move |n| jwt::with_suffix(base, &n.to_string()));
    let random = (0..RANDOM_SUFFIX_TRIES).map(move |_| jwt::with_suffix(base, &token::short_id()));
    std::iter::once(base.to_owned())
        .chain(numbered)
        .chain(random)
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
    if name.chars().count() > 50 {
        return Err(Error::bad("display_name", "must be 1-50 characters"));
    }
    crate::validate::line("display_name", name, 1, 50).map(drop)
}
