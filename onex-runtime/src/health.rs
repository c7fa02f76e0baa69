//! The node's HTTP endpoint: `GET <health path>` (JSON) and `GET /metrics`
//! (Prometheus text). A deliberately small HTTP/1.1 server: one request per
//! connection, GET only, bounded request size and read time.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Overall node status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Everything works.
    Healthy,
    /// Working with reduced guarantees (in-memory fallback, open circuit).
    Degraded,
    /// Not working.
    Unhealthy,
}

impl Status {
    /// `healthy`, `degraded` or `unhealthy`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Healthy => "healthy",
            Status::Degraded => "degraded",
            Status::Unhealthy => "unhealthy",
        }
    }
}

/// What the endpoint reports.
#[async_trait]
pub trait HealthReport: Send + Sync + 'static {
    /// The health document (must contain `status`) and the status.
    async fn health(&self) -> (Status, serde_json::Value);
    /// Prometheus text.
    fn metrics(&self) -> String;
}

/// Longest request head accepted.
const MAX_REQUEST: usize = 8 * 1024;

/// Binds the listener; the returned address has the real port when 0 was asked.
pub async fn bind(addr: SocketAddr) -> std::io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}

/// Serves until `stop` turns true.
pub async fn serve(
    listener: TcpListener,
    health_path: String,
    report: Arc<dyn HealthReport>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            _ = stop.changed() => break,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, _)) => {
                let report = report.clone();
                let path = health_path.clone();
                tokio::spawn(async move {
                    if let Err(e) = handle(stream, &path, report.as_ref()).await {
                        tracing::debug!("health request failed: {e}");
                    }
                });
            }
            Err(e) => {
                tracing::warn!("health endpoint accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
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

async fn handle(
    mut stream: TcpStream,
    health_path: &str,
    report: &dyn HealthReport,
) -> std::io::Result<()> {
    let head = tokio::time::timeout(Duration::from_secs(5), read_head(&mut stream))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "slow request"))??;
    let mut parts = head.lines().next().unwrap_or_default().split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (code, content_type, body) = match (method, path) {
        ("GET", p) if p == health_path => {
            let (status, doc) = report.health().await;
            let code = if status == Status::Unhealthy {
                "503 Service Unavailable"
            } else {
                "200 OK"
            };
            (code, "application/json", doc.to_string())
        }
        ("GET", "/metrics") => ("200 OK", "text/plain; version=0.0.4", report.metrics()),
        ("GET", _) => ("404 Not Found", "text/plain", "not found\n".to_string()),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "method not allowed\n".to_string(),
        ),
    };
    let response = format!(
        "HTTP/1.1 {code}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    struct Fixed(Status);

    #[async_trait]
    impl HealthReport for Fixed {
        async fn health(&self) -> (Status, serde_json::Value) {
            (self.0, json!({"status": self.0.as_str()}))
        }
        fn metrics(&self) -> String {
            "onex_x 1\n".into()
        }
    }

    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn serves_health_and_metrics() {
        let (listener, addr) = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        assert_ne!(addr.port(), 0);
        let (stop_tx, stop) = watch::channel(false);
        let task = tokio::spawn(serve(
            listener,
            "/health".into(),
            Arc::new(Fixed(Status::Unhealthy)),
            stop,
        ));
        let h = get(addr, "/health").await;
        assert!(h.starts_with("HTTP/1.1 503"), "{h}");
        assert!(h.ends_with("{\"status\":\"unhealthy\"}"), "{h}");
        let m = get(addr, "/metrics?x=1").await;
        assert!(
            m.starts_with("HTTP/1.1 200") && m.ends_with("onex_x 1\n"),
            "{m}"
        );
        assert!(get(addr, "/nope").await.starts_with("HTTP/1.1 404"));
        stop_tx.send(true).unwrap();
        task.await.unwrap();
    }
}
