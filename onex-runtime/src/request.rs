//! Request/response over topics: a request envelope carries the reply topic
//! in `metadata.reply_to`; the responder publishes its answer there with the
//! request's correlation id, which the requester awaits with a timeout.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use tokio::sync::oneshot;
use uuid::Uuid;

use crate::bus::{BusError, BusMessage, EventBus, MessageHandler, Nack, Subscription};
use crate::envelope::{Envelope, EventSource};

/// Metadata key naming the reply topic.
pub const REPLY_TO: &str = "reply_to";

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// Publishing the request failed.
    #[error(transparent)]
    Bus(#[from] BusError),
    /// No response within the timeout.
    #[error("no response within {timeout:?} (correlation_id {correlation_id})")]
    Timeout {
        /// The request's correlation id.
        correlation_id: Uuid,
        /// How long we waited.
        timeout: Duration,
    },
    /// The request has no `metadata.reply_to`.
    #[error("request has no reply topic")]
    NoReplyTopic,
}

type Pending = Arc<Mutex<HashMap<Uuid, oneshot::Sender<Envelope>>>>;

/// Sends requests and matches responses by correlation id.
pub struct RequestClient {
    bus: Arc<dyn EventBus>,
    reply_topic: String,
    source: EventSource,
    pending: Pending,
    subscription: Subscription,
}

struct ResponseRouter {
    pending: Pending,
}

#[async_trait]
impl MessageHandler for ResponseRouter {
    async fn on_message(&self, msg: &BusMessage) -> Result<(), Nack> {
        if let Ok(env) = Envelope::from_bytes(&msg.value) {
            let waiter = self
                .pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&env.correlation_id);
            if let Some(tx) = waiter {
                let _ = tx.send(env);
            }
        }
        Ok(())
    }
}

impl RequestClient {
    /// Listens for responses on `reply_topic` as `group` (use a group unique
    /// to this process so every instance sees its own answers).
    pub async fn new(
        bus: Arc<dyn EventBus>,
        reply_topic: &str,
        group: &str,
        source: EventSource,
    ) -> Result<Self, BusError> {
        let pending: Pending = Arc::default();
        let subscription = bus
            .subscribe(
                reply_topic,
                group,
                Arc::new(ResponseRouter {
                    pending: pending.clone(),
                }),
            )
            .await?;
        Ok(RequestClient {
            bus,
            reply_topic: reply_topic.to_string(),
            source,
            pending,
            subscription,
        })
    }

    /// Publishes a request to `topic` and waits up to `timeout` for the
    /// response with the same correlation id.
    pub async fn request(
        &self,
        topic: &str,
        event_type: &str,
        payload: Value,
        timeout: Duration,
    ) -> Result<Envelope, RequestError> {
        let mut env = Envelope::new(event_type, payload, self.source.clone());
        env.metadata
            .insert(REPLY_TO.into(), Value::String(self.reply_topic.clone()));
        let correlation_id = env.correlation_id;
        let (tx, rx) = oneshot::channel();
        self.lock().insert(correlation_id, tx);
        if let Err(e) = self.bus.publish_envelope(topic, &env, None).await {
            self.lock().remove(&correlation_id);
            return Err(e.into());
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(response)) => Ok(response),
            _ => {
                self.lock().remove(&correlation_id);
                Err(RequestError::Timeout {
                    correlation_id,
                    timeout,
                })
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, oneshot::Sender<Envelope>>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stops listening for responses.
    pub async fn close(self) {
        self.subscription.unsubscribe().await;
    }
}

/// Publishes the response to `request` on its reply topic, with the
/// request's correlation id and causation id = the request's event id.
pub async fn respond(
    bus: &dyn EventBus,
    request: &Envelope,
    event_type: &str,
    payload: Value,
    source: EventSource,
) -> Result<Envelope, RequestError> {
    let reply_to = request
        .metadata
        .get(REPLY_TO)
        .and_then(Value::as_str)
        .ok_or(RequestError::NoReplyTopic)?;
    let response = Envelope::caused_by(request, event_type, payload, source);
    bus.publish_envelope(reply_to, &response, None).await?;
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::handler_fn;
    use crate::bus::memory::InMemoryBus;
    use serde_json::json;

    #[tokio::test]
    async fn request_gets_the_matching_response() {
        let bus: Arc<dyn EventBus> = Arc::new(InMemoryBus::default());
        let responder_bus = bus.clone();
        let _server = bus
            .subscribe(
                "onex.cmd.svc.add.v1",
                "server",
                handler_fn(move |m: BusMessage| {
                    let bus = responder_bus.clone();
                    async move {
                        let req =
                            Envelope::from_bytes(&m.value).map_err(|e| Nack::new(e.to_string()))?;
                        let sum = req.payload["a"].as_i64().unwrap_or(0)
                            + req.payload["b"].as_i64().unwrap_or(0);
                        respond(
                            bus.as_ref(),
                            &req,
                            "added",
                            json!({"sum": sum}),
                            EventSource::default(),
                        )
                        .await
                        .map_err(|e| Nack::new(e.to_string()))?;
                        Ok(())
                    }
                }),
            )
            .await
            .unwrap();
        let client = RequestClient::new(
            bus.clone(),
            "onex.evt.svc.add-replies.v1",
            "client-1",
            EventSource::default(),
        )
        .await
        .unwrap();
        let resp = client
            .request(
                "onex.cmd.svc.add.v1",
                "add",
                json!({"a": 2, "b": 3}),
                Duration::from_secs(2),
            )
            .await
            .unwrap();
        assert_eq!(resp.payload["sum"], 5);
        assert_eq!(resp.event_type, "added");

        let err = client
            .request(
                "onex.cmd.svc.nobody.v1",
                "x",
                json!({}),
                Duration::from_millis(100),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, RequestError::Timeout { .. }));
        client.close().await;
    }

    #[tokio::test]
    async fn respond_needs_a_reply_topic() {
        let bus = InMemoryBus::default();
        let req = Envelope::new("x", json!({}), EventSource::default());
        assert!(matches!(
            respond(&bus, &req, "y", json!({}), EventSource::default()).await,
            Err(RequestError::NoReplyTopic)
        ));
    }
}
