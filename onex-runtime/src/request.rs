//! Request/response over topics: a request envelope carries the reply topic
//! in `metadata.reply_to`; the responder publishes its answer there with the
//! request's correlation id, which the requester awaits with a timeout.
//!
//! A correlation id is no secret: it travels in the request, so whoever can
//! read the request topic and write the reply topic can answer in its name.
//! An answer that names a cause (`causation_id`) must therefore name the
//! request's event id; one naming another event is ignored and the request
//! goes on waiting. Every responder here (`respond`, the nodes' replies,
//! `onex-gen serve`) names the request as the cause; an answer that names no
//! cause at all is still taken, as responders may leave it null.
//!
//! The reply topic is no less the sender's to choose, so a node answers
//! only on a topic answers belong on: a request whose `reply_to` names a
//! command, dead-letter or snapshot topic, a Kafka internal topic, a topic
//! the node consumes, a topic without the node's prefix (another
//! environment), or no topic name at all is dead-lettered as
//! `invalid_input` before its handler runs
//! ([`crate::topic::reply_topic_refusal`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use tokio::sync::oneshot;
use uuid::Uuid;

use crate::bus::{BusError, BusMessage, EventBus, Membership, MessageHandler, Nack, Subscription};
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

/// A request waiting for its answer.
struct Waiter {
    /// The request's event id, which an answer naming a cause must name.
    request_id: Uuid,
    answer: oneshot::Sender<Reply>,
}

impl Waiter {
    /// Whether `envelope` may answer this request: it names the request
    /// as its cause, or no cause at all.
    fn accepts(&self, envelope: &Envelope) -> bool {
        envelope
            .causation_id
            .map_or(true, |cause| cause == self.request_id)
    }
}

type Pending = Arc<Mutex<HashMap<Uuid, Waiter>>>;

/// A response, with the topic it arrived on.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// The topic the response was read from.
    pub topic: String,
    /// The response (correlation id = the request's).
    pub envelope: Envelope,
}

/// Sends requests and matches responses by correlation id. Responses come
/// either on a reply topic the request names (`metadata.reply_to`, see
/// [`RequestClient::new`]) or on fixed answer topics of the responder's own
/// (see [`RequestClient::following`]); one client can have many requests in
/// flight.
pub struct RequestClient {
    bus: Arc<dyn EventBus>,
    reply_topic: Option<String>,
    source: EventSource,
    pending: Pending,
    subscriptions: Vec<Subscription>,
}

struct ResponseRouter {
    topic: String,
    pending: Pending,
}

#[async_trait]
impl MessageHandler for ResponseRouter {
    async fn on_message(&self, msg: &BusMessage) -> Result<(), Nack> {
        let Ok(envelope) = Envelope::from_bytes(&msg.value) else {
            return Ok(());
        };
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let Some(waiter) = pending.get(&envelope.correlation_id) else {
            return Ok(());
        };
        if !waiter.accepts(&envelope) {
            tracing::warn!(
                topic = %self.topic,
                correlation_id = %envelope.correlation_id,
                causation_id = ?envelope.causation_id,
                request = %waiter.request_id,
                "an answer whose causation id names another event is ignored"
            );
            return Ok(());
        }
        if let Some(waiter) = pending.remove(&envelope.correlation_id) {
            let _ = waiter.answer.send(Reply {
                topic: self.topic.clone(),
                envelope,
            });
        }
        Ok(())
    }
}

impl RequestClient {
    /// Listens for responses on `reply_topic` as `group` (use a group unique
    /// to this process so every instance sees its own answers); every
    /// request names `reply_topic` in its `metadata.reply_to`.
    pub async fn new(
        bus: Arc<dyn EventBus>,
        reply_topic: &str,
        group: &str,
        source: EventSource,
    ) -> Result<Self, BusError> {
        let mut client = Self::following(bus, &[reply_topic], group, source).await?;
        client.reply_topic = Some(reply_topic.to_owned());
        Ok(client)
    }

    /// Listens for responses on each of `answer_topics` as `group` (unique to
    /// this process): for a responder that answers on topics of its own
    /// rather than on a reply topic the request names.
    pub async fn following(
        bus: Arc<dyn EventBus>,
        answer_topics: &[&str],
        group: &str,
        source: EventSource,
    ) -> Result<Self, BusError> {
        let pending: Pending = Arc::default();
        let mut subscriptions = Vec::new();
        for topic in answer_topics {
            let router = Arc::new(ResponseRouter {
                topic: (*topic).to_owned(),
                pending: pending.clone(),
            });
            subscriptions.push(bus.subscribe(Membership { topic, group }, router).await?);
        }
        Ok(RequestClient {
            bus,
            reply_topic: None,
            source,
            pending,
            subscriptions,
        })
    }

    /// The source this client's requests carry.
    pub fn source(&self) -> &EventSource {
        &self.source
    }

    /// Publishes a request to `topic` and waits up to `timeout` for the
    /// response with the same correlation id (and, if it names a cause, the
    /// request's event id as its causation id).
    pub async fn request(
        &self,
        topic: &str,
        event_type: &str,
        payload: Value,
        timeout: Duration,
    ) -> Result<Envelope, RequestError> {
        let env = Envelope::new(event_type, payload, self.source.clone());
        Ok(self.send(topic, env, timeout).await?.envelope)
    }

    /// Publishes a prepared request envelope to `topic` (adding the reply
    /// topic, if this client has one) and waits up to `timeout` for the
    /// response with its correlation id.
    pub async fn send(
        &self,
        topic: &str,
        mut env: Envelope,
        timeout: Duration,
    ) -> Result<Reply, RequestError> {
        if let Some(reply_topic) = &self.reply_topic {
            env.metadata
                .insert(REPLY_TO.into(), Value::String(reply_topic.clone()));
        }
        let correlation_id = env.correlation_id;
        let (tx, rx) = oneshot::channel();
        let waiter = Waiter {
            request_id: env.event_id,
            answer: tx,
        };
        self.lock().insert(correlation_id, waiter);
        if let Err(e) = self.bus.publish_envelope(topic, &env, None).await {
            self.lock().remove(&correlation_id);
            return Err(e.into());
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(reply)) => Ok(reply),
            _ => {
                self.lock().remove(&correlation_id);
                Err(RequestError::Timeout {
                    correlation_id,
                    timeout,
                })
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Waiter>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stops listening for responses.
    pub async fn close(self) {
        for s in self.subscriptions {
            s.unsubscribe().await;
        }
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

    /// A responder on `topic`: `answer(request)` gives the topic and payload
    /// of the answer (`None`: the request's reply topic).
    async fn responder(
        bus: &Arc<dyn EventBus>,
        topic: &str,
        answer: fn(&Envelope) -> (Option<&'static str>, Value),
    ) -> Subscription {
        let responder_bus = bus.clone();
        let handler = handler_fn(move |m: BusMessage| {
            let bus = responder_bus.clone();
            async move {
                let req = Envelope::from_bytes(&m.value).map_err(|e| Nack::new(e.to_string()))?;
                let (topic, payload) = answer(&req);
                let source = EventSource::default();
                let sent = match topic {
                    None => respond(bus.as_ref(), &req, "answered", payload, source)
                        .await
                        .map(drop),
                    Some(topic) => {
                        let answer = Envelope::caused_by(&req, "answered", payload, source);
                        bus.publish_envelope(topic, &answer, None)
                            .await
                            .map(drop)
                            .map_err(RequestError::from)
                    }
                };
                sent.map_err(|e| Nack::new(e.to_string()))
            }
        });
        bus.subscribe(
            Membership {
                topic,
                group: "server",
            },
            handler,
        )
        .await
        .unwrap()
    }

    /// Sends a request with `payload` to `topic` through `client`: the
    /// request and its reply.
    async fn ask(client: &RequestClient, topic: &str, payload: Value) -> (Envelope, Reply) {
        let req = Envelope::new("ask", payload, EventSource::default());
        let reply = client
            .send(topic, req.clone(), Duration::from_secs(2))
            .await
            .unwrap();
        (req, reply)
    }

    #[tokio::test]
    async fn request_gets_the_matching_response() {
        let bus: Arc<dyn EventBus> = Arc::new(InMemoryBus::default());
        let _server = responder(&bus, "onex.cmd.svc.add.v1", |req| {
            let sum =
                req.payload["a"].as_i64().unwrap_or(0) + req.payload["b"].as_i64().unwrap_or(0);
            (None, json!({ "sum": sum }))
        })
        .await;
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
        assert_eq!(resp.event_type, "answered");

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

    /// A responder with answer topics of its own: the reply says which one.
    #[tokio::test]
    async fn following_answer_topics_tells_which_topic_answered() {
        let bus: Arc<dyn EventBus> = Arc::new(InMemoryBus::default());
        let _server = responder(&bus, "onex.cmd.svc.check.v1", |req| {
            assert!(!req.metadata.contains_key(REPLY_TO));
            let topic = if req.payload["ok"] == true {
                "onex.evt.svc.passed.v1"
            } else {
                "onex.evt.svc.failed.v1"
            };
            (Some(topic), json!({}))
        })
        .await;
        let client = RequestClient::following(
            bus.clone(),
            &["onex.evt.svc.passed.v1", "onex.evt.svc.failed.v1"],
            "client-1",
            EventSource::default(),
        )
        .await
        .unwrap();
        for (ok, topic) in [
            (true, "onex.evt.svc.passed.v1"),
            (false, "onex.evt.svc.failed.v1"),
        ] {
            let (req, reply) = ask(&client, "onex.cmd.svc.check.v1", json!({ "ok": ok })).await;
            assert_eq!(reply.topic, topic);
            assert_eq!(reply.envelope.correlation_id, req.correlation_id);
        }
        client.close().await;
    }

    /// Whoever reads the request can copy its correlation id: an answer in
    /// that correlation whose causation id names another event is ignored
    /// (even when it comes first), the genuine one is taken. An answer that
    /// names no cause is taken too (responders may leave it null).
    #[tokio::test]
    async fn a_forged_answer_naming_another_cause_is_ignored() {
        let bus: Arc<dyn EventBus> = Arc::new(InMemoryBus::default());
        let reply_topic = "onex.evt.svc.ask-replies.v1";
        let responder_bus = bus.clone();
        let handler = handler_fn(move |m: BusMessage| {
            let bus = responder_bus.clone();
            async move {
                let req = Envelope::from_bytes(&m.value).map_err(|e| Nack::new(e.to_string()))?;
                let answer = |who: &str| {
                    Envelope::caused_by(
                        &req,
                        "answered",
                        json!({ "by": who }),
                        EventSource::default(),
                    )
                };
                let mut forged = answer("forger");
                forged.causation_id = Some(Uuid::new_v4());
                let mut uncaused = answer("no cause");
                uncaused.causation_id = None;
                let answers = match req.payload["kind"].as_str() {
                    Some("uncaused") => vec![uncaused],
                    _ => vec![forged, answer("responder")],
                };
                for a in answers {
                    bus.publish_envelope(reply_topic, &a, None)
                        .await
                        .map_err(|e| Nack::new(e.to_string()))?;
                }
                Ok(())
            }
        });
        let _server = bus
            .subscribe(
                Membership {
                    topic: "onex.cmd.svc.ask.v1",
                    group: "server",
                },
                handler,
            )
            .await
            .unwrap();
        let client =
            RequestClient::new(bus.clone(), reply_topic, "client-1", EventSource::default())
                .await
                .unwrap();
        for (kind, by) in [("forged", "responder"), ("uncaused", "no cause")] {
            let (req, reply) = ask(&client, "onex.cmd.svc.ask.v1", json!({ "kind": kind })).await;
            assert_eq!(reply.envelope.payload["by"], by, "{kind}");
            if kind == "forged" {
                assert_eq!(reply.envelope.causation_id, Some(req.event_id));
            }
        }
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
