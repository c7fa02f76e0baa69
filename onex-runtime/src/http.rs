//! A deliberately small HTTP/1.1 server for the runtime's endpoints (health,
//! metrics) and for tools built on the runtime: one request per connection,
//! the response body built in memory.
//!
//! The endpoint is often reachable by more than the platform (it listens on
//! every interface by default), so what a client can hold is bounded
//! ([`Limits`]): the request head's size and the time to send it, the time
//! of the whole exchange (a client that stops reading the response is
//! dropped), and the connections answered at once (the others wait in the
//! listen backlog), so that no client can take the process's file
//! descriptors, which its Kafka connections need too.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};

/// Longest request head accepted.
const MAX_REQUEST: usize = 8 * 1024;

/// What one client may hold of the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections answered at once; more wait to be accepted.
    pub max_connections: usize,
    /// How long a client may take to send its request head.
    pub read_timeout: Duration,
    /// How long a whole exchange may take, the response included.
    pub exchange_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 32,
            read_timeout: Duration::from_secs(2),
            exchange_timeout: Duration::from_secs(10),
        }
    }
}

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

/// Answers every connection with `route(request)` until `stop` turns true,
/// within the default [`Limits`]. `name` says whose endpoint it is in logs.
pub async fn serve<F, Fut>(
    listener: TcpListener,
    name: &'static str,
    stop: watch::Receiver<bool>,
    route: F,
) where
    F: Fn(Request) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response> + Send,
{
    serve_within(listener, name, stop, route, Limits::default()).await;
}

/// [`serve`] within `limits`.
pub async fn serve_within<F, Fut>(
    listener: TcpListener,
    name: &'static str,
    mut stop: watch::Receiver<bool>,
    route: F,
    limits: Limits,
) where
    F: Fn(Request) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response> + Send,
{
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    loop {
        // A slot first: while every slot is taken, new connections wait in
        // the listen backlog instead of taking descriptors.
        let slot = tokio::select! {
            _ = stop.changed() => break,
            s = slots.clone().acquire_owned() => s,
        };
        let Ok(slot) = slot else { break };
        let accepted = tokio::select! {
            _ = stop.changed() => break,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, _)) => {
                let route = route.clone();
                tokio::spawn(async move {
                    let exchange = answer(stream, route, limits.read_timeout);
                    let outcome = tokio::time::timeout(limits.exchange_timeout, exchange).await;
                    match outcome {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => tracing::debug!("{name} request failed: {e}"),
                        Err(_) => tracing::debug!("{name} client too slow; dropped"),
                    }
                    drop(slot);
                });
            }
            Err(e) => {
                tracing::warn!("{name} accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn answer<F, Fut>(
    mut stream: TcpStream,
    route: F,
    read_timeout: Duration,
) -> std::io::Result<()>
where
    F: Fn(Request) -> Fut,
    Fut: Future<Output = Response>,
{
    let head = tokio::time::timeout(read_timeout, read_head(&mut stream))
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// A server within `limits` whose every answer is `body`; its address
    /// and what stops it.
    async fn server(limits: Limits, body: String) -> (SocketAddr, watch::Sender<bool>) {
        let (listener, addr) = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let (stop_tx, stop) = watch::channel(false);
        let route = move |_req: Request| {
            let body = body.clone();
            async move { Response::metrics(body) }
        };
        tokio::spawn(serve_within(listener, "test", stop, route, limits));
        (addr, stop_tx)
    }

    async fn get(addr: SocketAddr) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /x HTTP/1.1\r\n\r\n").await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    fn quick() -> Limits {
        Limits {
            max_connections: 2,
            read_timeout: Duration::from_millis(300),
            exchange_timeout: Duration::from_millis(600),
        }
    }

    #[tokio::test]
    async fn a_client_that_stops_reading_is_dropped() {
        let body = "x".repeat(32 * 1024 * 1024);
        let (addr, _stop) = server(quick(), body.clone()).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").await.unwrap();
        // Read nothing until the exchange time is over: the server gives up
        // on the response instead of waiting for the client for good.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got).await;
        assert!(
            got.len() < body.len(),
            "the whole {} bytes were kept for the client",
            got.len()
        );
        // The server still answers.
        assert!(get(addr).await.starts_with("HTTP/1.1 200 OK"));
    }

    #[tokio::test]
    async fn idle_clients_take_at_most_the_connection_limit() {
        let limits = quick();
        let (addr, _stop) = server(limits, "ok\n".into()).await;
        // Two clients connect and send nothing: they hold both slots, so a
        // third waits in the backlog until the first is dropped for being
        // slow, rather than taking another descriptor at once.
        let mut idle = Vec::new();
        for _ in 0..2 {
            idle.push(TcpStream::connect(addr).await.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let started = Instant::now();
        let answer = get(addr).await;
        let waited = started.elapsed();
        assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
        assert!(
            waited >= limits.read_timeout / 2,
            "answered after {waited:?}, beside two idle clients"
        );
        assert!(waited < Duration::from_secs(5), "{waited:?}");
        // Twenty more idle clients: each is dropped in turn, and the server
        // answers again afterwards.
        for _ in 0..20 {
            idle.push(TcpStream::connect(addr).await.unwrap());
        }
        let answer = tokio::time::timeout(Duration::from_secs(10), get(addr)).await;
        assert!(answer.is_ok_and(|a| a.starts_with("HTTP/1.1 200 OK")));
    }
}
