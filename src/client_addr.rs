//! Who the client is, by address, for limits that count per address.
//!
//! The peer of the TCP connection is the client, unless the peer is a
//! proxy listed in `MESHI_TRUSTED_PROXIES`. Then the client is the last
//! address in `X-Forwarded-For` that is not itself a trusted proxy: each
//! proxy appends the address it saw, so entries to the left of the ones our
//! proxies wrote are whatever the client chose to send and prove nothing.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::HeaderMap;

use crate::config::{canonical_ip, Config};
use crate::error::Error;
use crate::state::AppState;

/// The client's address as limits should count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientAddr(pub IpAddr);

impl FromRequestParts<AppState> for ClientAddr {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Error> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip())
            .ok_or_else(|| Error::internal("the server runs without connection info"))?;
        Ok(ClientAddr(client_addr(&state.config, peer, &parts.headers)))
    }
}

/// The client behind a connection from `peer` carrying `headers`.
pub fn client_addr(config: &Config, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
    let peer = canonical_ip(peer);
    if !config.is_trusted_proxy(peer) {
        return peer;
    }
    // Several headers count as one list, in order.
    let forwarded: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .map(|entry| entry.parse::<IpAddr>().ok().map(canonical_ip))
        .collect::<Option<Vec<_>>>()
        // A list with anything unreadable in it cannot be followed safely.
        .unwrap_or_default();
    let mut client = peer;
    for hop in forwarded.into_iter().rev() {
        client = hop;
        if !config.is_trusted_proxy(hop) {
            break;
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_proxy;

    fn config(proxies: &[&str]) -> Config {
        let mut config = Config::defaults();
        config.trusted_proxies = proxies.iter().map(|p| parse_proxy(p).unwrap()).collect();
        config
    }

    fn headers(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append("x-forwarded-for", value.parse().unwrap());
        }
        headers
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let config = config(&[]);
        let claimed = headers(&["203.0.113.9"]);
        assert_eq!(
            client_addr(&config, ip("198.51.100.1"), &claimed),
            ip("198.51.100.1")
        );
    }

    #[test]
    fn a_trusted_proxy_names_the_address_it_appended() {
        let config = config(&["10.0.0.0/8"]);
        // The client sent a made-up first entry; the proxy appended the
        // address it really saw.
        let forwarded = headers(&["203.0.113.9, 198.51.100.7"]);
        assert_eq!(
            client_addr(&config, ip("10.1.2.3"), &forwarded),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn chained_trusted_proxies_are_walked_past() {
        let config = config(&["10.0.0.0/8", "192.0.2.5"]);
        let forwarded = headers(&["198.51.100.7", "192.0.2.5"]);
        assert_eq!(
            client_addr(&config, ip("10.1.2.3"), &forwarded),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn a_trusted_proxy_without_a_readable_list_is_the_client() {
        let config = config(&["10.0.0.1"]);
        assert_eq!(
            client_addr(&config, ip("10.0.0.1"), &HeaderMap::new()),
            ip("10.0.0.1")
        );
        let garbage = headers(&["198.51.100.7, not-an-address"]);
        assert_eq!(
            client_addr(&config, ip("10.0.0.1"), &garbage),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn ipv4_mapped_peers_count_as_ipv4() {
        let config = config(&["127.0.0.1"]);
        let forwarded = headers(&["198.51.100.7"]);
        assert_eq!(
            client_addr(&config, ip("::ffff:127.0.0.1"), &forwarded),
            ip("198.51.100.7")
        );
    }
}
