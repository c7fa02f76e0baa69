//! The ONEX event envelope: the JSON document every node publishes and consumes.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::headers::Headers;

/// Content type of a serialised envelope.
pub const ENVELOPE_CONTENT_TYPE: &str = "application/json";

/// Envelope version written by this runtime.
pub const ENVELOPE_VERSION: &str = "1.0.0";

/// Who produced an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct EventSource {
    /// Producing service (node name).
    pub service: String,
    /// The running instance.
    pub instance_id: String,
    /// Stable node id.
    pub node_id: String,
}

/// An event with its routing and tracing metadata (JSON, snake_case fields).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// Unique id of this event.
    pub event_id: Uuid,
    /// Event type, e.g. `git.commit.created`.
    pub event_type: String,
    /// Shared by every event of one flow; preserved across hops.
    pub correlation_id: Uuid,
    /// The event that caused this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<Uuid>,
    /// When the event was created.
    pub timestamp: DateTime<Utc>,
    /// Envelope version.
    #[serde(default = "default_version")]
    pub version: String,
    /// Producer.
    #[serde(default)]
    pub source: EventSource,
    /// Free-form metadata.
    #[serde(default)]
    pub metadata: Map<String, Value>,
    /// The event body.
    #[serde(default)]
    pub payload: Value,
}

fn default_version() -> String {
    ENVELOPE_VERSION.to_string()
}

/// An envelope that could not be decoded.
#[derive(Debug, thiserror::Error)]
#[error("not an ONEX envelope: {0}")]
pub struct EnvelopeError(#[from] serde_json::Error);

impl Envelope {
    /// A new event starting a new flow (fresh event and correlation ids).
    pub fn new(event_type: impl Into<String>, payload: Value, source: EventSource) -> Self {
        Envelope {
            event_id: Uuid::new_v4(),
            event_type: event_type.into(),
            correlation_id: Uuid::new_v4(),
            causation_id: None,
            timestamp: Utc::now(),
            version: default_version(),
            source,
            metadata: Map::new(),
            payload,
        }
    }

    /// A new event caused by `parent`: same correlation id, causation id set
    /// to the parent's event id.
    pub fn caused_by(
        parent: &Envelope,
        event_type: impl Into<String>,
        payload: Value,
        source: EventSource,
    ) -> Self {
        Envelope {
            correlation_id: parent.correlation_id,
            causation_id: Some(parent.event_id),
            ..Envelope::new(event_type, payload, source)
        }
    }

    /// Sets the correlation id.
    pub fn with_correlation_id(mut self, correlation_id: Uuid) -> Self {
        self.correlation_id = correlation_id;
        self
    }

    /// Serialises to JSON bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serialising plain data with string keys cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses JSON bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        Ok(serde_json::from_slice(bytes)?)
    }

    /// The standard headers describing this envelope.
    pub fn headers(&self) -> Headers {
        Headers {
            content_type: Some(ENVELOPE_CONTENT_TYPE.to_string()),
            correlation_id: Some(self.correlation_id),
            message_id: Some(self.event_id),
            timestamp: Some(self.timestamp),
            source: Some(self.source.service.clone()),
            event_type: Some(self.event_type.clone()),
            schema_version: Some(self.version.clone()),
            ..Headers::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn source() -> EventSource {
        EventSource {
            service: "node_x".into(),
            instance_id: "i-1".into(),
            node_id: "node_x".into(),
        }
    }

    #[test]
    fn json_round_trip() {
        let mut e = Envelope::new("a.b", json!({"n": 1, "s": ["x"]}), source());
        e.metadata.insert("k".into(), json!("v"));
        let back = Envelope::from_bytes(&e.to_bytes()).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn snake_case_field_names_on_the_wire() {
        let e = Envelope::new("a.b", json!(null), source());
        let v: Value = serde_json::from_slice(&e.to_bytes()).unwrap();
        for k in [
            "event_id",
            "event_type",
            "correlation_id",
            "timestamp",
            "version",
            "source",
            "metadata",
            "payload",
        ] {
            assert!(v.get(k).is_some(), "missing {k}");
        }
        assert_eq!(v["source"]["instance_id"], "i-1");
    }

    #[test]
    fn caused_by_preserves_correlation() {
        let parent = Envelope::new("a", json!({}), source());
        let child = Envelope::caused_by(&parent, "b", json!({}), source());
        assert_eq!(child.correlation_id, parent.correlation_id);
        assert_eq!(child.causation_id, Some(parent.event_id));
        assert_ne!(child.event_id, parent.event_id);
    }

    #[test]
    fn rejects_non_envelopes() {
        assert!(Envelope::from_bytes(b"{\"hello\": 1}").is_err());
        assert!(Envelope::from_bytes(b"not json").is_err());
    }

    #[test]
    fn headers_describe_the_envelope() {
        let e = Envelope::new("a.b", json!({}), source());
        let h = e.headers();
        assert_eq!(h.correlation_id, Some(e.correlation_id));
        assert_eq!(h.message_id, Some(e.event_id));
        assert_eq!(h.event_type.as_deref(), Some("a.b"));
        assert_eq!(h.content_type.as_deref(), Some(ENVELOPE_CONTENT_TYPE));
    }
}
