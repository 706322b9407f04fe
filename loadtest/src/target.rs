//! Which servers the tool may load, and from which source addresses.
//!
//! Load is only ever aimed at the loopback range (127.0.0.0/8, `localhost`,
//! `::1`) unless the operator states the target is theirs: a typo in a URL
//! must not turn a benchmark into traffic against somebody else's host.
//! Host names other than `localhost` are refused rather than resolved,
//! because what a name resolves to can change under our feet.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use anyhow::{bail, Context, Result};
use url::{Host, Url};

/// One server node: its REST base and its socket endpoint.
#[derive(Debug, Clone)]
pub struct Target {
    /// `http://host:port/`, under which `/api/v1` lives.
    pub http: Url,
    /// `ws://host:port/ws`.
    pub ws: Url,
    /// Where to open TCP connections.
    pub addr: SocketAddr,
    pub loopback: bool,
}

impl Target {
    /// Parses `http://`, `ws://` or a bare `host:port`. Only plain-text
    /// schemes: the tool is built without TLS.
    pub fn parse(raw: &str, allow_foreign: bool) -> Result<Target> {
        let with_scheme = if raw.contains("://") {
            raw.to_owned()
        } else {
            format!("http://{raw}")
        };
        let url = Url::parse(&with_scheme).with_context(|| format!("`{raw}` is not a URL"))?;
        match url.scheme() {
            "http" | "ws" => {}
            other => bail!("`{raw}`: scheme {other} is not supported (use http:// or ws://)"),
        }
        let host = url.host().with_context(|| format!("`{raw}` has no host"))?;
        let port = url.port().unwrap_or(80);
        let (ip, loopback) = match host {
            Host::Ipv4(ip) => (IpAddr::V4(ip), ip.is_loopback()),
            Host::Ipv6(ip) => (IpAddr::V6(ip), ip.is_loopback()),
            Host::Domain(name) if name.eq_ignore_ascii_case("localhost") => {
                (IpAddr::V4(Ipv4Addr::LOCALHOST), true)
            }
            Host::Domain(name) => bail!(
                "`{raw}`: give the target as an IP address; host names other than localhost \
                 are not resolved ({name})"
            ),
        };
        if !loopback && !allow_foreign {
            bail!(
                "refusing to load `{raw}`: its host is not a loopback address (127.0.0.0/8, \
                 localhost, ::1); pass --i-own-this-target only for a server you run yourself"
            );
        }
        let authority = match ip {
            IpAddr::V4(v4) => format!("{v4}:{port}"),
            IpAddr::V6(v6) => format!("[{v6}]:{port}"),
        };
        Ok(Target {
            http: Url::parse(&format!("http://{authority}/"))?,
            ws: Url::parse(&format!("ws://{authority}/ws"))?,
            addr: SocketAddr::new(ip, port),
            loopback,
        })
    }

    /// The server's Prometheus page.
    pub fn metrics(&self) -> String {
        format!("{}metrics", self.http)
    }

    /// A REST URL under `/api/v1`.
    pub fn api(&self, path: &str) -> String {
        format!("{}api/v1{}", self.http, path)
    }
}

/// Source addresses to bind before connecting. Each source address has its
/// own range of ephemeral ports, so spreading over 127.0.0.x lifts the
/// ceiling of about 28,000 sockets per (source, target) pair.
pub fn sources(explicit: &[IpAddr], count: u8, allow_foreign: bool) -> Result<Vec<IpAddr>> {
    let mut sources: Vec<IpAddr> = explicit.to_vec();
    sources.extend((1..=count).map(|n| IpAddr::V4(Ipv4Addr::new(127, 0, 0, n))));
    sources.dedup();
    for source in &sources {
        if !source.is_loopback() && !allow_foreign {
            bail!("source address {source} is not a loopback address");
        }
    }
    Ok(sources)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_targets_are_accepted_in_every_spelling() {
        for raw in [
            "http://127.0.0.1:8080",
            "ws://127.9.8.7:1/ws",
            "localhost:8080",
            "http://LOCALHOST:9",
            "http://[::1]:8080",
        ] {
            let target = Target::parse(raw, false).unwrap_or_else(|e| panic!("{raw}: {e}"));
            assert!(target.loopback);
            assert_eq!(target.ws.path(), "/ws");
        }
    }

    #[test]
    fn other_hosts_are_refused_unless_owned() {
        for raw in [
            "http://10.0.0.1:8080",
            "http://192.168.1.2",
            "http://[2001:db8::1]:80",
        ] {
            let err = Target::parse(raw, false).unwrap_err().to_string();
            assert!(err.contains("--i-own-this-target"), "{raw}: {err}");
            assert!(Target::parse(raw, true).is_ok(), "{raw}");
        }
        assert!(Target::parse("http://example.com", true).is_err());
        assert!(Target::parse("https://127.0.0.1", false).is_err());
    }

    #[test]
    fn sources_count_up_from_127_0_0_1() {
        let got = sources(&[], 3, false).unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(got[2], IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3)));
        assert!(sources(&["10.1.1.1".parse().unwrap()], 0, false).is_err());
    }
}
