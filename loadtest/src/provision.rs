//! Users and matched pairs, made over REST before the load begins.
//!
//! Registration hashes a password on the server, which is slow by design,
//! so it runs with bounded concurrency: enough to keep the server's cores
//! busy, not so much that requests queue into timeouts. Every user gets one
//! session token; sockets of the same user share it.
//!
//! With a [`Minter`] (`--jwt-secret-file`) users are not registered: each
//! gets a JWT signed with the server's own secret, and one `GET /me` with
//! it makes the server create the user (and tells its id), so users exist
//! before the load just as registered ones do. The JWT is then the user's
//! token everywhere a session token would be.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use futures_util::stream::{self, StreamExt, TryStreamExt};
use serde::Deserialize;
use serde_json::json;

use crate::jwt::Minter;
use crate::progress::Progress;
use crate::target::Target;

const PASSWORD: &str = "load-test-password";
/// Attempts at one REST call when the server says `rate_limited` or is
/// briefly unavailable.
const ATTEMPTS: u32 = 5;

#[derive(Debug, Clone)]
pub struct User {
    pub id: String,
    pub handle: String,
    pub token: String,
}

/// Two matched users and their conversation.
#[derive(Debug, Clone)]
pub struct Pair {
    pub a: User,
    pub b: User,
    pub conversation_id: String,
}

/// REST calls, spread round-robin over the targets (all nodes of a
/// cluster share one database).
#[derive(Clone)]
pub struct Rest {
    http: reqwest::Client,
    targets: Arc<[Target]>,
    next: Arc<AtomicUsize>,
    concurrency: usize,
    /// Signs users on instead of registering them, when set.
    minter: Option<Arc<Minter>>,
}

#[derive(Deserialize)]
struct TokenAndUser {
    token: String,
    user: UserId,
}

#[derive(Deserialize)]
struct UserId {
    id: String,
}

#[derive(Deserialize)]
struct Me {
    id: String,
    handle: String,
}

#[derive(Deserialize)]
struct Created {
    id: String,
}

#[derive(Deserialize)]
struct Matched {
    #[serde(rename = "match")]
    matched: MatchView,
}

#[derive(Deserialize)]
struct MatchView {
    conversation_id: String,
}

impl Rest {
    /// The text of the first target's `/metrics`, if it answers.
    pub async fn first_metrics(&self) -> Option<String> {
        let response = self
            .http
            .get(self.targets.first()?.metrics())
            .send()
            .await
            .ok()?;
        response.error_for_status().ok()?.text().await.ok()
    }

    /// `minter`, when given, provisions users by single sign-on.
    pub fn new(
        targets: Vec<Target>,
        concurrency: usize,
        timeout: Duration,
        minter: Option<Minter>,
    ) -> Result<Rest> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .pool_max_idle_per_host(concurrency)
            .build()
            .context("building the HTTP client")?;
        Ok(Rest {
            http,
            targets: targets.into(),
            next: Arc::new(AtomicUsize::new(0)),
            concurrency: concurrency.max(1),
            minter: minter.map(Arc::new),
        })
    }

    /// Whether users are signed on with minted JWTs rather than registered.
    pub fn mints_tokens(&self) -> bool {
        self.minter.is_some()
    }

    fn url(&self, path: &str) -> String {
        let at = self.next.fetch_add(1, Ordering::Relaxed) % self.targets.len();
        self.targets[at].api(path)
    }

    /// One call with retries on 429 and 503; returns the status and body.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<serde_json::Value>,
    ) -> Result<(u16, String)> {
        let mut delay = Duration::from_millis(50);
        for attempt in 1..=ATTEMPTS {
            let mut request = self.http.request(method.clone(), self.url(path));
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            if let Some(body) = &body {
                request = request.json(body);
            }
            let response = request
                .send()
                .await
                .with_context(|| format!("{method} {path}"))?;
            let status = response.status().as_u16();
            let text = response.text().await.unwrap_or_default();
            if (status == 429 || status == 503) && attempt < ATTEMPTS {
                tokio::time::sleep(delay).await;
                delay *= 2;
                continue;
            }
            return Ok((status, text));
        }
        unreachable!("the last attempt returns")
    }

    async fn expect<T: for<'de> Deserialize<'de>>(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<serde_json::Value>,
        ok: &[u16],
    ) -> Result<T> {
        let (status, text) = self.call(method.clone(), path, token, body).await?;
        if !ok.contains(&status) {
            bail!("{method} {path} answered {status}: {text}");
        }
        serde_json::from_str(&text).with_context(|| format!("{method} {path}: unexpected {text}"))
    }

    pub async fn register(&self, handle: &str) -> Result<User> {
        let body = json!({"handle": handle, "password": PASSWORD, "display_name": handle});
        let created: TokenAndUser = self
            .expect(
                reqwest::Method::POST,
                "/auth/register",
                None,
                Some(body),
                &[201],
            )
            .await?;
        Ok(User {
            id: created.user.id,
            handle: handle.to_owned(),
            token: created.token,
        })
    }

    /// Signs a user on with a JWT for `subject` asking for `handle`: the
    /// server creates the user at this first request. The handle it gave
    /// may differ (a suffix when taken).
    pub async fn sign_on(&self, minter: &Minter, subject: &str, handle: &str) -> Result<User> {
        let token = minter.mint(subject, handle)?;
        let (status, text) = self
            .call(reqwest::Method::GET, "/me", Some(&token), None)
            .await?;
        if status == 401 {
            bail!(
                "the server refused a minted JWT ({text}); start it with MESHI_JWT_SECRET_FILE \
                 holding the secret of --jwt-secret-file, and with the MESHI_JWT_ISSUER and \
                 MESHI_JWT_AUDIENCE given as --jwt-issuer and --jwt-audience, if any"
            );
        }
        if status != 200 {
            bail!("GET /me answered {status}: {text}");
        }
        let me: Me =
            serde_json::from_str(&text).with_context(|| format!("GET /me: unexpected {text}"))?;
        Ok(User {
            id: me.id,
            handle: me.handle,
            token,
        })
    }

    /// Provisions `count` users named `<prefix><n>`, in order: registers
    /// them, or with a minter signs them on.
    pub async fn register_many(
        &self,
        prefix: &str,
        count: usize,
        progress: &Progress,
    ) -> Result<Vec<User>> {
        let what = match self.minter {
            Some(_) => "signing users on",
            None => "registering users",
        };
        let bar = progress.bar(count as u64, what);
        // Subjects are as unique as handles: the run id is in the prefix.
        let subject_stem = format!("loadtest-{}", prefix.trim_end_matches('_'));
        let subject_stem = subject_stem.as_str();
        let users = stream::iter(0..count)
            .map(|n| {
                let bar = bar.clone();
                async move {
                    let handle = format!("{prefix}{n}");
                    let user = match &self.minter {
                        Some(minter) => {
                            self.sign_on(minter, &format!("{subject_stem}-{n}"), &handle)
                                .await
                        }
                        None => self.register(&handle).await,
                    };
                    bar.inc(1);
                    user
                }
            })
            .buffered(self.concurrency)
            .try_collect()
            .await;
        bar.finish_and_clear();
        users
    }

    /// Matches `a` with `b` the way people do: `a` posts a card, `b`
    /// presses interested, `a` matches `b`.
    pub async fn match_pair(&self, a: User, b: User) -> Result<Pair> {
        let card: Created = self
            .expect(
                reqwest::Method::POST,
                "/cards",
                Some(&a.token),
                Some(json!({"title": "load test", "body": "", "tags": []})),
                &[201],
            )
            .await?;
        let (status, text) = self
            .call(
                reqwest::Method::PUT,
                &format!("/cards/{}/interest", card.id),
                Some(&b.token),
                None,
            )
            .await?;
        if status != 204 {
            bail!("pressing interest answered {status}: {text}");
        }
        let matched: Matched = self
            .expect(
                reqwest::Method::POST,
                &format!("/cards/{}/matches", card.id),
                Some(&a.token),
                Some(json!({"user_id": b.id})),
                &[200, 201],
            )
            .await?;
        Ok(Pair {
            a,
            b,
            conversation_id: matched.matched.conversation_id,
        })
    }

    /// Provisions `2 * count` users and matches them two by two.
    pub async fn pairs(
        &self,
        prefix: &str,
        count: usize,
        progress: &Progress,
    ) -> Result<Vec<Pair>> {
        let users = self.register_many(prefix, count * 2, progress).await?;
        let bar = progress.bar(count as u64, "matching pairs");
        let mut users = users.into_iter();
        let mut couples = Vec::with_capacity(count);
        while let (Some(a), Some(b)) = (users.next(), users.next()) {
            couples.push((a, b));
        }
        let pairs = stream::iter(couples)
            .map(|(a, b)| {
                let bar = bar.clone();
                async move {
                    let pair = self.match_pair(a, b).await;
                    bar.inc(1);
                    pair
                }
            })
            .buffered(self.concurrency)
            .try_collect::<Vec<Pair>>()
            .await;
        bar.finish_and_clear();
        let pairs = pairs?;
        if pairs.len() != count {
            return Err(anyhow!("matched {} pairs of {count}", pairs.len()));
        }
        Ok(pairs)
    }
}
