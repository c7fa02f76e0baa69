//! The node's HTTP endpoint: `GET <health path>` (JSON) and `GET /metrics`
//! (Prometheus text), on the runtime's small HTTP server ([`crate::http`]).

use std::sync::Arc;

use async_trait::async_trait;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::http::{Request, Response};

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

pub use crate::http::bind;

/// Serves the health document at `health_path` and `/metrics` until `stop`
/// turns true.
pub async fn serve(
    listener: TcpListener,
    health_path: String,
    report: Arc<dyn HealthReport>,
    stop: watch::Receiver<bool>,
) {
    let route = move |req: Request| {
        let report = report.clone();
        let health_path = health_path.clone();
        async move {
            match (req.method.as_str(), req.path.as_str()) {
                ("GET", p) if p == health_path => {
                    let (status, doc) = report.health().await;
                    let code = if status == Status::Unhealthy {
                        "503 Service Unavailable"
                    } else {
                        "200 OK"
                    };
                    Response::with_status(code, &doc)
                }
                ("GET", "/metrics") => Response::metrics(report.metrics()),
                ("GET", _) => Response::not_found(),
                _ => Response::method_not_allowed(),
            }
        }
    };
    crate::http::serve(listener, "health endpoint", stop, route).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::net::SocketAddr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

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
