//! Users by single sign-on: HS256 JWTs minted with the secret the server
//! under test was started with, instead of users registered one by one.
//!
//! Registration hashes a password on the server (argon2, slow by design);
//! a JWT of a new `sub` makes the server create its user on first sight,
//! which costs it a lookup and an insert. Only for a server the operator
//! runs: whoever holds its secret can sign on as anyone.
//!
//! Neither the secret nor a token is ever printed: this type's debug form
//! hides the key, and errors name the file, never its contents.

use std::fmt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

/// The shortest secret the server accepts (`MESHI_JWT_SECRET`).
pub const MIN_SECRET_BYTES: usize = 32;

/// How long a minted token is valid: longer than any bounded run (an hour
/// of load plus provisioning and drains), since sockets opened with a JWT
/// close at its `exp`.
pub const LIFETIME: Duration = Duration::from_secs(6 * 3600);

/// Signs one token per user.
pub struct Minter {
    key: EncodingKey,
    header: Header,
    issuer: Option<String>,
    audience: Option<String>,
}

impl fmt::Debug for Minter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Minter")
            .field("key", &"<redacted>")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish()
    }
}

#[derive(Serialize)]
struct Claims<'a> {
    sub: &'a str,
    iat: u64,
    exp: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<&'a str>,
    /// The server derives the user's handle from it.
    preferred_username: &'a str,
    /// And the display name from this.
    name: &'a str,
}

impl Minter {
    /// Reads the secret the way the server reads `MESHI_JWT_SECRET_FILE`:
    /// UTF-8 text, one trailing newline ignored, at least 32 bytes.
    pub fn from_file(
        path: &Path,
        issuer: Option<String>,
        audience: Option<String>,
    ) -> Result<Minter> {
        let bytes = std::fs::read(path)
            .with_context(|| format!("reading --jwt-secret-file {}", path.display()))?;
        let text = String::from_utf8(bytes).map_err(|_| {
            anyhow!(
                "--jwt-secret-file {} must hold UTF-8 text, as the server's \
                 MESHI_JWT_SECRET_FILE must",
                path.display()
            )
        })?;
        let secret = text
            .strip_suffix('\n')
            .map(|t| t.strip_suffix('\r').unwrap_or(t))
            .unwrap_or(&text);
        Minter::new(secret.as_bytes(), issuer, audience)
            .with_context(|| format!("--jwt-secret-file {}", path.display()))
    }

    /// A minter for `secret`; `issuer` and `audience` go into every token
    /// (the server checks them when MESHI_JWT_ISSUER / MESHI_JWT_AUDIENCE
    /// are set).
    pub fn new(secret: &[u8], issuer: Option<String>, audience: Option<String>) -> Result<Minter> {
        if secret.len() < MIN_SECRET_BYTES {
            bail!(
                "the JWT secret is {} bytes; the server accepts none shorter than \
                 {MIN_SECRET_BYTES}",
                secret.len()
            );
        }
        // As the server does: name the backend, so that a second one
        // switched on by some other dependency cannot make the choice
        // ambiguous.
        let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
        let key = EncodingKey::from_secret(secret).context("using the JWT secret")?;
        let nonempty = |value: Option<String>| value.filter(|v| !v.is_empty());
        Ok(Minter {
            key,
            header: Header::new(Algorithm::HS256),
            issuer: nonempty(issuer),
            audience: nonempty(audience),
        })
    }

    /// A token for `subject`, asking for the handle and display name
    /// `handle`, valid from now for [`LIFETIME`].
    pub fn mint(&self, subject: &str, handle: &str) -> Result<String> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .context("the clock is before 1970")?
            .as_secs();
        let claims = Claims {
            sub: subject,
            iat: now,
            exp: now + LIFETIME.as_secs(),
            iss: self.issuer.as_deref(),
            aud: self.audience.as_deref(),
            preferred_username: handle,
            name: handle,
        };
        // The library's errors say what failed, never the key or claims.
        jsonwebtoken::encode(&self.header, &claims, &self.key).context("signing a JWT")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{DecodingKey, Validation};

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[derive(serde::Deserialize)]
    struct Read {
        sub: String,
        iat: u64,
        exp: u64,
        iss: Option<String>,
        aud: Option<String>,
        preferred_username: String,
        name: String,
    }

    fn read(token: &str, validation: &Validation) -> Read {
        jsonwebtoken::decode::<Read>(
            token,
            &DecodingKey::from_secret(SECRET).unwrap(),
            validation,
        )
        .expect("a valid token")
        .claims
    }

    #[test]
    fn tokens_carry_what_the_server_checks() {
        let minter = Minter::new(SECRET, Some("idp".into()), Some("meshi".into())).unwrap();
        let token = minter.mint("loadtest-ltabc123s-7", "ltabc123s_7").unwrap();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&["idp"]);
        validation.set_audience(&["meshi"]);
        validation.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
        let claims = read(&token, &validation);
        assert_eq!(claims.sub, "loadtest-ltabc123s-7");
        assert_eq!(claims.preferred_username, "ltabc123s_7");
        assert_eq!(claims.name, "ltabc123s_7");
        assert_eq!(claims.exp - claims.iat, LIFETIME.as_secs());
        assert_eq!(claims.iss.as_deref(), Some("idp"));
        assert_eq!(claims.aud.as_deref(), Some("meshi"));
    }

    #[test]
    fn without_issuer_and_audience_tokens_have_neither() {
        let minter = Minter::new(SECRET, None, Some(String::new())).unwrap();
        let token = minter.mint("s", "h").unwrap();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.validate_aud = false;
        let claims = read(&token, &validation);
        assert!(claims.iss.is_none() && claims.aud.is_none());
    }

    #[test]
    fn the_secret_file_is_read_like_the_server_reads_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret");
        let mut with_newline = SECRET.to_vec();
        with_newline.extend_from_slice(b"\r\n");
        std::fs::write(&file, &with_newline).unwrap();
        let token = Minter::from_file(&file, None, None)
            .unwrap()
            .mint("s", "h")
            .unwrap();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.validate_aud = false;
        read(&token, &validation);

        std::fs::write(&file, b"too short\n").unwrap();
        let err = format!("{:#}", Minter::from_file(&file, None, None).unwrap_err());
        assert!(err.contains("9 bytes"), "{err}");
        assert!(
            !err.contains("too short"),
            "the secret is never shown: {err}"
        );
    }

    #[test]
    fn the_debug_form_hides_the_key() {
        let minter = Minter::new(SECRET, None, None).unwrap();
        let shown = format!("{minter:?}");
        assert!(!shown.contains("0123456789abcdef"), "{shown}");
    }
}
