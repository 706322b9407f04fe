//! Turning away a connection over a cap with a real HTTP answer, not a
//! reset, without letting the refusals themselves pile up.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use crate::error::Error;

/// Refusals answered at once; past this a refused connection is simply
/// closed, so a flood costs no more than its accepts.
const AT_ONCE: usize = 64;

/// How long a refused client has to take its answer.
const LINGER: Duration = Duration::from_secs(1);

const RETRY_AFTER_SECS: u64 = 1;

#[derive(Clone)]
pub struct Refusals {
    in_flight: Arc<Semaphore>,
}

impl Default for Refusals {
    fn default() -> Self {
        Refusals {
            in_flight: Arc::new(Semaphore::new(AT_ONCE)),
        }
    }
}

impl Refusals {
    /// Answers `stream` with `why` and closes it.
    pub fn refuse(&self, mut stream: TcpStream, why: Error) {
        let Ok(permit) = self.in_flight.clone().try_acquire_owned() else {
            return;
        };
        let answer = answer(&why);
        tokio::spawn(async move {
            let _permit = permit;
            let _ = tokio::time::timeout(LINGER, async {
                stream.write_all(&answer).await?;
                stream.shutdown().await?;
                // Reading what the client sent before closing makes the
                // close a FIN: closing with unread bytes would reset the
                // connection and could destroy the answer in flight.
                let mut sink = [0u8; 1024];
                while stream.read(&mut sink).await? > 0 {}
                Ok::<_, std::io::Error>(())
            })
            .await;
        });
    }
}

/// The whole HTTP/1.1 response for a refusal, in the REST API's error form.
fn answer(why: &Error) -> Vec<u8> {
    let body = why.response_json();
    let status = why.status();
    let mut answer = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         retry-after: {RETRY_AFTER_SECS}\r\nconnection: close\r\n\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len(),
    )
    .into_bytes();
    answer.extend_from_slice(&body);
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_is_a_complete_response_with_the_contract_error() {
        let answer = String::from_utf8(answer(&Error::Unavailable("a connection"))).unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        assert!(
            head.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
            "{head}"
        );
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{head}"
        );
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(body["error"]["code"], "unavailable");
    }
}
