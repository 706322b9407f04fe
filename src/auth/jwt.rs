//! Tokens from an external identity provider: JWTs signed with HS256 (a
//! shared secret) or RS256 (the provider's RSA public key). This module
//! only decides whether a token is genuine and current and what it says;
//! turning its subject into a user is the caller's business.
//!
//! The key is chosen by the token's `alg` from the ones configured, and
//! each key is used with its own algorithm only, so an RS256 public key can
//! never be fed to HMAC as a secret (the classic algorithm confusion).

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::config::{Config, ConfigError};

/// Longest `sub` accepted; providers use opaque ids far shorter.
const MAX_SUBJECT_CHARS: usize = 255;

/// Checks identity-provider JWTs against the configured keys.
pub struct JwtVerifier {
    keys: Vec<(Algorithm, DecodingKey)>,
    issuer: Option<String>,
    audience: Option<String>,
    leeway_secs: u64,
}

/// Why single sign-on cannot be set up as configured.
#[derive(Debug, thiserror::Error)]
pub enum JwtSetupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("MESHI_JWT_PUBLIC_KEY_FILE does not hold an RSA public key in PEM form: {0}")]
    BadPublicKey(#[source] jsonwebtoken::errors::Error),
    #[error("the JWT secret cannot be used: {0}")]
    BadSecret(#[source] jsonwebtoken::errors::Error),
}

/// What a verified token says about its holder.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The provider's id for the user (`sub`).
    pub subject: String,
    /// A handle to start from (`preferred_username`, else `nickname`).
    pub username: Option<String>,
    /// A display name (`name`).
    pub name: Option<String>,
    /// Unix milliseconds after which the token no longer passes, leeway
    /// included, so sockets close exactly when REST starts refusing it.
    pub expires_at: i64,
}

/// Why a token was refused. Each maps to a message safe to show: none
/// repeats anything from the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Expired,
    NotYetValid,
    /// Bad signature, wrong issuer or audience, unknown algorithm,
    /// malformed: the client cannot fix any of these by waiting.
    Invalid,
}

impl Refusal {
    pub fn message(self) -> &'static str {
        match self {
            Refusal::Expired => "token expired",
            Refusal::NotYetValid => "token not valid yet",
            Refusal::Invalid => "invalid token",
        }
    }
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    exp: f64,
    #[serde(default)]
    preferred_username: Option<serde_json::Value>,
    #[serde(default)]
    nickname: Option<serde_json::Value>,
    #[serde(default)]
    name: Option<serde_json::Value>,
}

impl JwtVerifier {
    /// The verifier for the configured keys, or `None` when single sign-on
    /// is off. Reads key files, so a bad one stops the server at start.
    pub fn from_config(config: &Config) -> Result<Option<Self>, JwtSetupError> {
        let keys = config.jwt_keys()?;
        if keys.is_empty() {
            return Ok(None);
        }
        // With one backend compiled in, jsonwebtoken picks it by itself;
        // naming it keeps verification working should another dependency
        // ever switch on the second backend, which would leave the choice
        // ambiguous and panic on first use.
        let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
        let mut verifier_keys = Vec::new();
        if let Some(secret) = &keys.secret {
            let key = DecodingKey::from_secret(secret.expose().as_bytes())
                .map_err(JwtSetupError::BadSecret)?;
            verifier_keys.push((Algorithm::HS256, key));
        }
        if let Some(pem) = &keys.public_key_pem {
            let key = DecodingKey::from_rsa_pem(pem).map_err(JwtSetupError::BadPublicKey)?;
            verifier_keys.push((Algorithm::RS256, key));
        }
        Ok(Some(JwtVerifier {
            keys: verifier_keys,
            issuer: config.jwt_issuer.clone().filter(|i| !i.is_empty()),
            audience: config.jwt_audience.clone().filter(|a| !a.is_empty()),
            leeway_secs: config.jwt_leeway_secs,
        }))
    }

    /// Checks signature, `exp`, `nbf`, and `iss`/`aud` when configured.
    pub fn verify(&self, token: &str) -> Result<Verified, Refusal> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| Refusal::Invalid)?;
        let (algorithm, key) = self
            .keys
            .iter()
            .find(|(algorithm, _)| *algorithm == header.alg)
            .ok_or(Refusal::Invalid)?;
        let mut validation = Validation::new(*algorithm);
        validation.leeway = self.leeway_secs;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        let mut required = vec!["exp", "sub"];
        match &self.issuer {
            Some(issuer) => {
                validation.set_issuer(&[issuer]);
                required.push("iss");
            }
            None => validation.iss = None,
        }
        match &self.audience {
            Some(audience) => {
                validation.set_audience(&[audience]);
                required.push("aud");
            }
            // Without a configured audience any `aud` is acceptable; the
            // library would otherwise refuse every token that has one.
            None => validation.validate_aud = false,
        }
        validation.set_required_spec_claims(&required);
        let data = jsonwebtoken::decode::<Claims>(token, key, &validation).map_err(|e| match e
            .kind()
        {
            ErrorKind::ExpiredSignature => Refusal::Expired,
            ErrorKind::ImmatureSignature => Refusal::NotYetValid,
            _ => Refusal::Invalid,
        })?;
        let claims = data.claims;
        let subject_chars = claims.sub.chars().count();
        if subject_chars == 0 || subject_chars > MAX_SUBJECT_CHARS {
            return Err(Refusal::Invalid);
        }
        let text = |value: Option<serde_json::Value>| match value {
            Some(serde_json::Value::String(s)) if !s.trim().is_empty() => Some(s),
            _ => None,
        };
        let leeway = i64::try_from(self.leeway_secs).unwrap_or(i64::MAX);
        let expires_at = (claims.exp.floor() as i64)
            .saturating_add(leeway)
            .saturating_mul(1000);
        // The library still passes a token during the second of its `exp`;
        // RFC 7519 ends it at `exp`, which is also when its sockets close.
        if crate::clock::now_ms() >= expires_at {
            return Err(Refusal::Expired);
        }
        Ok(Verified {
            subject: claims.sub,
            username: text(claims.preferred_username).or_else(|| text(claims.nickname)),
            name: text(claims.name),
            expires_at,
        })
    }
}

/// Whether a bearer token is shaped like a JWT: three base64url segments
/// joined by dots. Session tokens are one base64url run with no dot, so
/// the two never mix.
pub fn looks_like_jwt(token: &str) -> bool {
    let segments: Vec<&str> = token.split('.').collect();
    segments.len() == 3
        && segments.iter().all(|segment| {
            !segment.is_empty()
                && segment
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// A short, stable name for a token that reveals nothing of it: what a
/// socket reports as its session id when it has no stored session.
pub fn fingerprint(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    format!("jwt_{}", hex::encode(&digest[..8]))
}

/// A handle (3-32 of `a-z 0-9 _`) built from what the provider calls the
/// user: lowercased, other characters turned to `_`, runs of `_` squeezed.
pub fn handle_base(name: &str) -> String {
    let mut handle = String::with_capacity(name.len().min(32));
    for c in name.chars().flat_map(char::to_lowercase) {
        let c = if c.is_ascii_lowercase() || c.is_ascii_digit() {
            c
        } else {
            '_'
        };
        if !(c == '_' && (handle.is_empty() || handle.ends_with('_'))) {
            handle.push(c);
        }
        if handle.len() == 32 {
            break;
        }
    }
    let handle = handle.trim_end_matches('_');
    match handle.len() {
        0 => "user".to_owned(),
        1 | 2 => format!("{handle}_user"),
        _ => handle.to_owned(),
    }
}

/// `base` with `suffix` after an underscore, cut so the whole stays a
/// valid handle.
pub fn with_suffix(base: &str, suffix: &str) -> String {
    let room = 32usize.saturating_sub(suffix.len() + 1);
    // Handles are ASCII, so any byte index is a character boundary.
    let stem = base[..base.len().min(room)].trim_end_matches('_');
    format!("{stem}_{suffix}")
}

/// A display name (1-50 characters, no control or bidirectional
/// characters) from the
/// provider's `name`, or `None` when nothing usable is left.
pub fn display_name(name: &str) -> Option<String> {
    let cleaned: String = name
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .filter(|c| !crate::validate::is_bidi_control(*c))
        .collect();
    let trimmed: String = cleaned.trim().chars().take(50).collect();
    let trimmed = trimmed.trim_end().to_owned();
    (!trimmed.is_empty()).then_some(trimmed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_jwts_from_session_tokens() {
        assert!(looks_like_jwt(
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln-_"
        ));
        assert!(!looks_like_jwt(
            "Zk3q9VQx7bH2nLr8TfWc1yPjA4eD_-Zk3q9VQx7bH2nLr8Tf"
        ));
        assert!(!looks_like_jwt("a.b"));
        assert!(!looks_like_jwt("a.b.c.d"));
        assert!(
            !looks_like_jwt("a..c"),
            "empty segments are not base64url runs"
        );
        assert!(!looks_like_jwt("a.b c.d"));
    }

    #[test]
    fn handles_are_sanitized_from_provider_names() {
        assert_eq!(handle_base("Alice.Smith"), "alice_smith");
        assert_eq!(handle_base("  --Bob--  "), "bob");
        assert_eq!(handle_base("auth0|5f7c8ec7"), "auth0_5f7c8ec7");
        assert_eq!(handle_base("Jo"), "jo_user");
        assert_eq!(handle_base("山田"), "user");
        let long = handle_base(&"x".repeat(100));
        assert_eq!(long.len(), 32);
        for handle in [handle_base("Alice.Smith"), long, handle_base("山田")] {
            crate::auth::validate_handle(&handle).expect("a valid handle");
        }
    }

    #[test]
    fn suffixes_keep_handles_within_32() {
        let base = "a".repeat(32);
        let handle = with_suffix(&base, "2");
        assert_eq!(handle.len(), 32);
        assert!(handle.ends_with("_2"));
        assert_eq!(with_suffix("alice", "k3x9"), "alice_k3x9");
        crate::auth::validate_handle(&handle).expect("a valid handle");
    }

    #[test]
    fn display_names_are_cleaned_and_bounded() {
        assert_eq!(
            display_name("  Ada\nLovelace "),
            Some("Ada Lovelace".into())
        );
        assert_eq!(display_name(" \t "), None);
        assert_eq!(
            display_name(&"é".repeat(80)).map(|n| n.chars().count()),
            Some(50)
        );
    }

    #[test]
    fn fingerprints_hide_the_token() {
        let token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln";
        let print = fingerprint(token);
        assert!(print.starts_with("jwt_") && print.len() == 20, "{print}");
        assert!(!print.contains("eyJ"));
        assert_eq!(print, fingerprint(token));
    }
}
