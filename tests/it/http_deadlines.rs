//! HTTP deadlines and connection caps, probed with raw TCP connections:
//! each test opens a connection that stalls in one way and measures when
//! the server closes it. Connections come from their own loopback source
//! address, so the test's HTTP client does not count against the caps.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::common::TestServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Longer than any deadline under test: a close later than this is no
/// close at all.
const GIVE_UP: Duration = Duration::from_secs(10);

async fn connect_from(source: &str, server: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("a socket");
    socket
        .bind(format!("{source}:0").parse().unwrap())
        .expect("bind a loopback source address");
    socket.connect(server).await.expect("connect")
}

/// Reads until the server closes the connection; returns what it sent
/// and how long after `since` the close came.
async fn read_to_close(stream: &mut TcpStream, since: Instant) -> (String, Duration) {
    let mut received = Vec::new();
    let mut chunk = [0u8; 4096];
    let read = tokio::time::timeout(GIVE_UP, async {
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "the server kept the connection open past {GIVE_UP:?}; it sent {:?}",
        String::from_utf8_lossy(&received)
    );
    (
        String::from_utf8_lossy(&received).into_owned(),
        since.elapsed(),
    )
}

/// Reads one whole response (head and a `content-length` body).
async fn read_response(stream: &mut TcpStream) -> String {
    let mut received = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(GIVE_UP, stream.read(&mut chunk))
            .await
            .expect("a response in time")
            .expect("read");
        assert!(n > 0, "closed before a whole response: {received:?}");
        received.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&received).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if body.len() >= length {
                return text;
            }
        }
    }
}

fn assert_closed_near(elapsed: Duration, deadline: Duration, what: &str) {
    assert!(
        elapsed >= deadline.mul_f32(0.8) && elapsed <= deadline + Duration::from_secs(2),
        "{what}: closed after {elapsed:?}, the deadline is {deadline:?}"
    );
    println!("{what}: closed after {elapsed:?} (deadline {deadline:?})");
}

const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nhost: meshi\r\n\r\n";

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_at_the_header_deadline() {
    let server = TestServer::start_with(|c| c.http_header_timeout_ms = 700).await;
    let since = Instant::now();
    let mut silent = connect_from("127.0.0.2", server.addr).await;
    let (sent, elapsed) = read_to_close(&mut silent, since).await;
    assert_eq!(sent, "", "nothing was asked, so nothing is answered");
    assert_closed_near(elapsed, Duration::from_millis(700), "silent connection");
}

#[tokio::test]
async fn half_a_request_line_is_closed_at_the_header_deadline() {
    let server = TestServer::start_with(|c| c.http_header_timeout_ms = 700).await;
    let since = Instant::now();
    let mut slow = connect_from("127.0.0.2", server.addr).await;
    slow.write_all(b"GET /healthz HT").await.unwrap();
    let (_, elapsed) = read_to_close(&mut slow, since).await;
    assert_closed_near(elapsed, Duration::from_millis(700), "half a request line");
}

#[tokio::test]
async fn headers_trickled_past_the_deadline_are_cut_off() {
    // Each byte resets no timer: the deadline is on the whole head.
    let server = TestServer::start_with(|c| c.http_header_timeout_ms = 700).await;
    let since = Instant::now();
    let mut slow = connect_from("127.0.0.2", server.addr).await;
    let trickle = async {
        for byte in HEALTHZ {
            if slow.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let _ = tokio::time::timeout(GIVE_UP, trickle).await;
    let (sent, elapsed) = read_to_close(&mut slow, since).await;
    assert!(!sent.contains("200"), "a trickled head was served: {sent}");
    assert!(
        elapsed < Duration::from_millis(100) * HEALTHZ.len() as u32,
        "the trickle ran its whole course ({elapsed:?})"
    );
}

#[tokio::test]
async fn a_body_that_never_arrives_is_closed_at_the_body_deadline() {
    let server = TestServer::start_with(|c| {
        c.http_header_timeout_ms = 10_000;
        c.http_body_timeout_ms = 700;
    })
    .await;
    let mut slow = connect_from("127.0.0.2", server.addr).await;
    slow.write_all(
        b"POST /api/v1/auth/login HTTP/1.1\r\nhost: meshi\r\ncontent-type: application/json\r\n\
          content-length: 100\r\n\r\n{\"handle\":",
    )
    .await
    .unwrap();
    let since = Instant::now();
    let (sent, elapsed) = read_to_close(&mut slow, since).await;
    assert!(
        sent.starts_with("HTTP/1.1 400"),
        "the stalled request is answered: {sent}"
    );
    assert!(sent.contains("did not arrive within"), "{sent}");
    assert_closed_near(elapsed, Duration::from_millis(700), "stalled body");
}

#[tokio::test]
async fn a_kept_alive_connection_is_closed_at_the_idle_deadline_and_not_before() {
    let server = TestServer::start_with(|c| {
        c.http_header_timeout_ms = 300;
        c.http_idle_timeout_ms = 900;
    })
    .await;
    let mut kept = connect_from("127.0.0.2", server.addr).await;
    // Gaps longer than the header deadline but shorter than the idle one:
    // each is judged as idle, and together they outlast both.
    for _ in 0..4 {
        kept.write_all(HEALTHZ).await.unwrap();
        let response = read_response(&mut kept).await;
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
    kept.write_all(HEALTHZ).await.unwrap();
    assert!(read_response(&mut kept).await.starts_with("HTTP/1.1 200"));
    let since = Instant::now();
    let (sent, elapsed) = read_to_close(&mut kept, since).await;
    assert_eq!(sent, "");
    assert_closed_near(elapsed, Duration::from_millis(900), "idle connection");
}

fn upgrade_request() -> Vec<u8> {
    b"GET /ws HTTP/1.1\r\nhost: meshi\r\nconnection: upgrade\r\nupgrade: websocket\r\n\
      sec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
      sec-websocket-protocol: meshi.v1\r\n\r\n"
        .to_vec()
}

/// Sends `request` in four pieces spread over about `over`.
async fn send_slowly(stream: &mut TcpStream, request: &[u8], over: Duration) {
    for piece in request.chunks(request.len().div_ceil(4)) {
        stream.write_all(piece).await.unwrap();
        tokio::time::sleep(over / 4).await;
    }
}

#[tokio::test]
async fn an_upgrade_slower_than_its_deadline_gets_no_101() {
    let server = TestServer::start_with(|c| {
        c.http_header_timeout_ms = 10_000;
        c.upgrade_timeout_ms = 600;
    })
    .await;
    // The same pace is fine for a plain request, under the header deadline.
    let mut plain = connect_from("127.0.0.2", server.addr).await;
    send_slowly(&mut plain, HEALTHZ, Duration::from_millis(1_200)).await;
    assert!(read_response(&mut plain).await.starts_with("HTTP/1.1 200"));

    let since = Instant::now();
    let mut upgrade = connect_from("127.0.0.2", server.addr).await;
    send_slowly(
        &mut upgrade,
        &upgrade_request(),
        Duration::from_millis(1_200),
    )
    .await;
    let (sent, elapsed) = read_to_close(&mut upgrade, since).await;
    assert!(sent.starts_with("HTTP/1.1 408"), "{sent}");
    assert!(!sent.contains(" 101 "), "{sent}");
    println!("slow upgrade: refused and closed after {elapsed:?} (deadline 600ms)");

    // One in time is upgraded.
    let mut quick = connect_from("127.0.0.2", server.addr).await;
    quick.write_all(&upgrade_request()).await.unwrap();
    let mut head = [0u8; 12];
    quick.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 101");
}

/// Opens a connection and asks for `/healthz` on it; returns the answer's
/// first line, the connection and the whole answer.
async fn ask(source: &str, server: SocketAddr) -> (String, TcpStream, String) {
    let mut stream = connect_from(source, server).await;
    stream.write_all(HEALTHZ).await.unwrap();
    let response = read_response(&mut stream).await;
    let status = response.lines().next().unwrap_or_default().to_owned();
    (status, stream, response)
}

/// Waits until a connection from `source` is served again: a closed
/// connection gives its place back once the server has seen it close.
async fn admitted_again(source: &str, server: SocketAddr) {
    for _ in 0..50 {
        let (status, _stream, _) = ask(source, server).await;
        if status.contains("200") {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("closed connections never gave their places back");
}

#[tokio::test]
async fn connections_over_the_per_address_cap_get_429() {
    let server = TestServer::start_with(|c| c.max_connections_per_addr = 2).await;
    let (first, first_stream, _) = ask("127.0.0.2", server.addr).await;
    let (second, _second_stream, _) = ask("127.0.0.2", server.addr).await;
    assert!(
        first.contains("200") && second.contains("200"),
        "{first} / {second}"
    );
    let (third, _, answer) = ask("127.0.0.2", server.addr).await;
    assert!(third.starts_with("HTTP/1.1 429"), "{answer}");
    assert!(answer.contains("\"code\":\"rate_limited\""), "{answer}");
    assert!(
        answer.contains("MESHI_MAX_CONNECTIONS_PER_ADDR"),
        "{answer}"
    );
    assert!(
        answer.to_ascii_lowercase().contains("retry-after: 1"),
        "{answer}"
    );
    // Another address is not held back by this one's connections.
    let (elsewhere, _elsewhere_stream, _) = ask("127.0.0.3", server.addr).await;
    assert!(elsewhere.contains("200"), "{elsewhere}");
    // A closed connection gives its place back.
    drop(first_stream);
    admitted_again("127.0.0.2", server.addr).await;
}

#[tokio::test]
async fn a_trusted_proxy_is_not_held_to_the_per_address_cap() {
    let server = TestServer::start_with(|c| {
        c.max_connections_per_addr = 1;
        c.trusted_proxies = vec!["127.0.0.4/32".parse().unwrap()];
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..4 {
        let (status, stream, _) = ask("127.0.0.4", server.addr).await;
        assert!(status.contains("200"), "{status}");
        held.push(stream);
    }
    let (_, _one, _) = ask("127.0.0.5", server.addr).await;
    let (status, _, _) = ask("127.0.0.5", server.addr).await;
    assert!(status.contains("429"), "{status}");
}

#[tokio::test]
async fn connections_over_the_total_cap_get_503_and_places_come_back() {
    let server = TestServer::start_with(|c| c.max_connections = 3).await;
    // The test's own HTTP client may hold a kept-alive connection of its
    // own, so the cap is met after two or three of these.
    let mut held = Vec::new();
    let refusal = loop {
        let (status, stream, answer) = ask("127.0.0.2", server.addr).await;
        if !status.contains("200") {
            break answer;
        }
        held.push(stream);
        assert!(held.len() <= 3, "more connections admitted than the cap");
    };
    assert!(refusal.starts_with("HTTP/1.1 503"), "{refusal}");
    assert!(refusal.contains("\"code\":\"unavailable\""), "{refusal}");
    assert!(refusal.contains("MESHI_MAX_CONNECTIONS"), "{refusal}");
    held.clear();
    admitted_again("127.0.0.2", server.addr).await;
}

#[tokio::test]
async fn an_upgraded_socket_keeps_its_place_under_the_cap() {
    // The place is the TCP connection's, which lives on in the socket.
    let server = TestServer::start_with(|c| c.max_connections_per_addr = 1).await;
    let mut socket = connect_from("127.0.0.2", server.addr).await;
    socket.write_all(&upgrade_request()).await.unwrap();
    let mut head = [0u8; 12];
    socket.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 101");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, _, _) = ask("127.0.0.2", server.addr).await;
    assert!(status.contains("429"), "{status}");
}
