//! Connections driven byte by byte, for clients no well-behaved library would be: half a
//! handshake, half a request head, a body that never ends, a reader that never reads.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// How long a test waits for the server to answer or close before calling the connection
/// held open. Far above every server-side bound, so a slow machine does not fail a test.
pub const HELD_OPEN: Duration = Duration::from_secs(60);

pub async fn tcp(port: u16) -> TcpStream {
    TcpStream::connect(("127.0.0.1", port)).await.unwrap()
}

/// A completed TLS handshake with the server on `port`, trusting `ca_pem`.
pub async fn tls(port: u16, ca_pem: &str) -> TlsStream<TcpStream> {
    tls_with(port, super::tls_config_trusting(ca_pem))
        .await
        .unwrap()
}

pub async fn tls_with(
    port: u16,
    config: rustls::ClientConfig,
) -> std::io::Result<TlsStream<TcpStream>> {
    TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp(port).await)
        .await
}

/// The first flight of a TLS handshake (a ClientHello) as a client would send it.
pub fn client_hello(ca_pem: &str) -> Vec<u8> {
    let mut conn = rustls::ClientConnection::new(
        Arc::new(super::tls_config_trusting(ca_pem)),
        ServerName::try_from("localhost").unwrap(),
    )
    .unwrap();
    let mut hello = Vec::new();
    conn.write_tls(&mut hello).unwrap();
    hello
}

/// Reads until the server closes the connection (end of stream or an error such as a reset),
/// returning what arrived; panics, naming `what`, if it is still open after [`HELD_OPEN`].
pub async fn until_closed(what: &str, stream: &mut (impl AsyncRead + Unpin)) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let read_all = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    if tokio::time::timeout(HELD_OPEN, read_all).await.is_err() {
        panic!("{what}: the server kept the connection open");
    }
    got
}

/// Sends `bytes` (ignoring a write refused because the server already closed) and returns
/// everything the server sent until it closed.
pub async fn exchange(
    what: &str,
    stream: &mut (impl AsyncRead + AsyncWrite + Unpin),
    bytes: &[u8],
) -> Vec<u8> {
    if stream.write_all(bytes).await.is_ok() {
        let _ = stream.flush().await;
    }
    until_closed(what, stream).await
}

/// The status codes of the HTTP/1.x answers in `bytes`, in order.
pub fn statuses(bytes: &[u8]) -> Vec<u16> {
    let text = String::from_utf8_lossy(bytes);
    text.match_indices("HTTP/1.")
        .filter(|(i, _)| text.get(i + 8..i + 9) == Some(" "))
        .filter_map(|(i, _)| text.get(i + 9..i + 12)?.parse().ok())
        .collect()
}
