//! A deliberately small HTTP/1.1 server for the runtime's endpoints (health,
//! metrics) and for tools built on the runtime: one request per connection,
//! bounded request size and read time, the response body built in memory.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Longest request head accepted.
const MAX_REQUEST: usize = 8 * 1024;

/// How long a client may take to send its request head.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// A request: its method and its path without the query string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `GET`, `POST` ...
    pub method: String,
    /// `/health` for `GET /health?verbose HTTP/1.1`.
    pub path: String,
}

/// A complete response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status line after the version, e.g. `200 OK`.
    pub status: &'static str,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// Body.
    pub body: String,
}

impl Response {
    /// `200 OK` with a JSON body.
    pub fn json(value: &serde_json::Value) -> Self {
        Self::with_status("200 OK", value)
    }

    /// A JSON body with another status.
    pub fn with_status(status: &'static str, value: &serde_json::Value) -> Self {
        Response {
            status,
            content_type: "application/json",
            body: value.to_string(),
        }
    }

    /// `200 OK` with Prometheus text exposition.
    pub fn metrics(text: String) -> Self {
        Response {
            status: "200 OK",
            content_type: "text/plain; version=0.0.4",
            body: text,
        }
    }

    /// `404 Not Found`.
    pub fn not_found() -> Self {
        Self::text("404 Not Found", "not found\n")
    }

    /// `405 Method Not Allowed`.
    pub fn method_not_allowed() -> Self {
        Self::text("405 Method Not Allowed", "method not allowed\n")
    }

    fn text(status: &'static str, body: &str) -> Self {
        Response {
            status,
            content_type: "text/plain",
            body: body.to_owned(),
        }
    }
}

/// Binds the listener; the returned address has the real port when 0 was asked.
pub async fn bind(addr: SocketAddr) -> std::io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}

/// Answers every connection with `route(request)` until `stop` turns true.
/// `name` says whose endpoint it is in logs.
pub async fn serve<F, Fut>(
    listener: TcpListener,
    name: &'static str,
    mut stop: watch::Receiver<bool>,
    route: F,
) where
    F: Fn(Request) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response> + Send,
{
    loop {
        let accepted = tokio::select! {
            _ = stop.changed() => break,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, _)) => {
                let route = route.clone();
                tokio::spawn(async move {
                    if let Err(e) = answer(stream, route).await {
                        tracing::debug!("{name} request failed: {e}");
                    }
                });
            }
            Err(e) => {
                tracing::warn!("{name} accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn answer<F, Fut>(mut stream: TcpStream, route: F) -> std::io::Result<()>
where
    F: Fn(Request) -> Fut,
    Fut: Future<Output = Response>,
{
    let head = tokio::time::timeout(READ_TIMEOUT, read_head(&mut stream))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "slow request"))??;
    let mut parts = head.lines().next().unwrap_or_default().split_whitespace();
    let method = parts.next().unwrap_or("").to_owned();
    let target = parts.next().unwrap_or("");
    let path = target.split('?').next().unwrap_or("").to_owned();
    let response = route(Request { method, path }).await;
    let bytes = format!(
        "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        response.status,
        response.content_type,
        response.body.len(),
        response.body
    );
    stream.write_all(bytes.as_bytes()).await?;
    stream.shutdown().await
}

async fn read_head(stream: &mut TcpStream) -> std::io::Result<String> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < MAX_REQUEST {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}
