//! The ONEX event envelope: the JSON document every node publishes and consumes.
//!
//! Decoding accepts every form the ONEX services put on the wire:
//!
//! - the runtime's own (below);
//! - `timestamp` as epoch seconds (integer or float), as an RFC 3339 string,
//!   or as Python's `datetime.isoformat()` without a zone (read as UTC);
//! - `source` as `{service, node_type, node_id}`, as `{service, instance_id,
//!   hostname}`, or as a plain string naming the service;
//! - `causation_id`, `metadata` (`trace_id`, `span_id`, `user_id`, ...),
//!   `version` and `payload` present or not.
//!
//! Only `event_type` is required (broadcast and group commands,
//! `{"command": ..., "payload": ...}`, name it `command`). A missing
//! `event_id` gets the record's `message_id` header, else one derived from
//! the record's place ([`Envelope::from_message`]) or a fresh one, a
//! missing `correlation_id` the record's `correlation_id` header or a fresh
//! one, a missing timestamp the time of decoding.
//!
//! Encoding always writes every field: `event_id`, `event_type`,
//! `correlation_id`, `causation_id` (null when there is none), `timestamp`
//! (RFC 3339, UTC, microseconds), `version`, `source{service, instance_id,
//! node_id, node_type?, hostname?}`, `metadata` (with `trace_id` and
//! `span_id`) and `payload`.

use chrono::{DateTime, NaiveDateTime, SecondsFormat, TimeZone, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::bus::BusMessage;
use crate::headers::Headers;

/// Namespace of the event ids derived from a record's place
/// ([`Envelope::from_message`]).
const RECORD_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6f6e_6578_2d72_6563_6f72_642d_6964_7321);

/// Content type of a serialised envelope.
pub const ENVELOPE_CONTENT_TYPE: &str = "application/json";

/// Envelope version written by this runtime.
pub const ENVELOPE_VERSION: &str = "1.0.0";

/// Metadata keys of the distributed trace.
pub mod trace {
    /// The trace every event of one flow shares.
    pub const TRACE_ID: &str = "trace_id";
    /// This event's span.
    pub const SPAN_ID: &str = "span_id";
    /// The span of the event that caused this one.
    pub const PARENT_SPAN_ID: &str = "parent_span_id";
}

/// Who produced an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct EventSource {
    /// Producing service (node name).
    #[serde(default)]
    pub service: String,
    /// The running instance.
    #[serde(default)]
    pub instance_id: String,
    /// Stable node id.
    #[serde(default)]
    pub node_id: String,
    /// Node kind (`effect`, `compute`, ...), when the producer is a node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_type: Option<String>,
    /// Host the producer runs on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
}

impl EventSource {
    /// A source naming a service and its instance; the node id is the service.
    pub fn new(service: impl Into<String>, instance_id: impl Into<String>) -> Self {
        let service = service.into();
        EventSource {
            node_id: service.clone(),
            service,
            instance_id: instance_id.into(),
            node_type: None,
            hostname: None,
        }
    }

    /// The same source with its node kind.
    pub fn with_node_type(mut self, node_type: impl Into<String>) -> Self {
        self.node_type = Some(node_type.into());
        self
    }
}

/// `source` as a plain string (service name) or an object.
fn source_from_wire<'de, D: Deserializer<'de>>(d: D) -> Result<EventSource, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Wire {
        Name(String),
        Full(EventSource),
    }
    Ok(match Option::<Wire>::deserialize(d)? {
        None => EventSource::default(),
        Some(Wire::Name(service)) => EventSource {
            service,
            ..EventSource::default()
        },
        Some(Wire::Full(s)) => s,
    })
}

/// An event with its routing and tracing metadata (JSON, snake_case fields).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "WireEnvelope")]
pub struct Envelope {
    /// Unique id of this event.
    pub event_id: Uuid,
    /// Event type, e.g. `git.commit.created`.
    pub event_type: String,
    /// Shared by every event of one flow; preserved across hops.
    pub correlation_id: Uuid,
    /// The event that caused this one.
    pub causation_id: Option<Uuid>,
    /// When the event was created.
    #[serde(serialize_with = "timestamp_to_wire")]
    pub timestamp: DateTime<Utc>,
    /// Envelope version.
    pub version: String,
    /// Producer.
    pub source: EventSource,
    /// Free-form metadata; `trace_id`, `span_id` and `parent_span_id` carry
    /// the distributed trace.
    pub metadata: Map<String, Value>,
    /// The event body.
    pub payload: Value,
}

/// The envelope as it may arrive: everything but `event_type` optional.
#[derive(Deserialize)]
struct WireEnvelope {
    #[serde(default)]
    event_id: Option<Uuid>,
    #[serde(default)]
    event_type: Option<String>,
    /// Broadcast and group commands (`{"command", "payload"}`) name their
    /// type here.
    #[serde(default)]
    command: Option<String>,
    #[serde(default)]
    correlation_id: Option<Uuid>,
    #[serde(default)]
    causation_id: Option<Uuid>,
    #[serde(default, deserialize_with = "timestamp_from_wire")]
    timestamp: Option<DateTime<Utc>>,
    #[serde(default, alias = "schema_version")]
    version: Option<String>,
    #[serde(default, deserialize_with = "source_from_wire")]
    source: EventSource,
    #[serde(default)]
    metadata: Option<Map<String, Value>>,
    #[serde(default)]
    payload: Value,
}

impl TryFrom<WireEnvelope> for Envelope {
    type Error = String;

    fn try_from(wire: WireEnvelope) -> Result<Self, String> {
        let event_type = wire
            .event_type
            .or(wire.command)
            .ok_or("missing field `event_type`")?;
        Ok(Envelope {
            event_id: wire.event_id.unwrap_or_else(Uuid::new_v4),
            event_type,
            correlation_id: wire.correlation_id.unwrap_or_else(Uuid::new_v4),
            causation_id: wire.causation_id,
            timestamp: wire.timestamp.unwrap_or_else(now),
            version: wire.version.unwrap_or_else(default_version),
            source: wire.source,
            metadata: wire.metadata.unwrap_or_default(),
            payload: wire.payload,
        })
    }
}

fn timestamp_to_wire<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_timestamp(t))
}

/// RFC 3339 in UTC with microseconds, the precision Python's `datetime`
/// keeps: `2025-10-18T10:00:00.123456Z`.
pub fn format_timestamp(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// The current time at the precision envelopes carry.
pub fn now() -> DateTime<Utc> {
    let t = Utc::now();
    let micros = t.timestamp_micros();
    Utc.timestamp_micros(micros).single().unwrap_or(t)
}

/// Reads a timestamp written by any ONEX producer: RFC 3339 (`Z` or an
/// offset), or an ISO 8601 date-time without a zone (UTC), with `T` or a
/// space between date and time.
pub fn parse_timestamp(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(text, f).ok())
        .map(|n| n.and_utc())
}

/// Epoch seconds (with a fraction) as a time.
fn from_epoch_seconds(secs: f64) -> Option<DateTime<Utc>> {
    if !secs.is_finite() {
        return None;
    }
    let micros = (secs * 1e6).round();
    if micros.abs() > 1e17 {
        return None;
    }
    Utc.timestamp_micros(micros as i64).single()
}

fn timestamp_from_wire<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
    use serde::de::Error;
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_f64()
            .and_then(from_epoch_seconds)
            .map(Some)
            .ok_or_else(|| D::Error::custom(format!("timestamp {n} is out of range"))),
        Some(Value::String(s)) => parse_timestamp(&s)
            .or_else(|| s.trim().parse::<f64>().ok().and_then(from_epoch_seconds))
            .map(Some)
            .ok_or_else(|| D::Error::custom(format!("timestamp {s:?} is not a date-time"))),
        Some(other) => Err(D::Error::custom(format!(
            "timestamp must be a string or epoch seconds, not {other}"
        ))),
    }
}

fn default_version() -> String {
    ENVELOPE_VERSION.to_string()
}

/// An envelope that could not be decoded.
#[derive(Debug, thiserror::Error)]
#[error("not an ONEX envelope: {0}")]
pub struct EnvelopeError(#[from] serde_json::Error);

fn new_trace_id() -> Value {
    Value::String(Uuid::new_v4().to_string())
}

impl Envelope {
    /// A new event starting a new flow (fresh event, correlation and trace ids).
    pub fn new(event_type: impl Into<String>, payload: Value, source: EventSource) -> Self {
        let mut metadata = Map::new();
        metadata.insert(trace::TRACE_ID.into(), new_trace_id());
        metadata.insert(trace::SPAN_ID.into(), new_trace_id());
        Envelope {
            event_id: Uuid::new_v4(),
            event_type: event_type.into(),
            correlation_id: Uuid::new_v4(),
            causation_id: None,
            timestamp: now(),
            version: default_version(),
            source,
            metadata,
            payload,
        }
    }

    /// A new event caused by `parent`: same correlation id and trace id,
    /// causation id set to the parent's event id, parent span id to the
    /// parent's span id, and a span of its own.
    pub fn caused_by(
        parent: &Envelope,
        event_type: impl Into<String>,
        payload: Value,
        source: EventSource,
    ) -> Self {
        let mut child = Envelope {
            correlation_id: parent.correlation_id,
            causation_id: Some(parent.event_id),
            ..Envelope::new(event_type, payload, source)
        };
        if let Some(trace_id) = parent.metadata.get(trace::TRACE_ID) {
            child
                .metadata
                .insert(trace::TRACE_ID.into(), trace_id.clone());
        }
        if let Some(span) = parent.metadata.get(trace::SPAN_ID) {
            child
                .metadata
                .insert(trace::PARENT_SPAN_ID.into(), span.clone());
        }
        child
    }

    /// Sets the correlation id.
    pub fn with_correlation_id(mut self, correlation_id: Uuid) -> Self {
        self.correlation_id = correlation_id;
        self
    }

    /// The trace id, if the envelope carries one.
    pub fn trace_id(&self) -> Option<&str> {
        self.metadata.get(trace::TRACE_ID).and_then(Value::as_str)
    }

    /// Serialises to JSON bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serialising plain data with string keys cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses JSON bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        Self::from_record(bytes, &Headers::default())
    }

    /// Parses a record's value, taking what the envelope lacks from the
    /// record's headers: the event id (`message_id`), the correlation id,
    /// and the trace (`trace_id`, `span_id`, `parent_span_id`) of producers
    /// that send it in headers only.
    pub fn from_record(bytes: &[u8], headers: &Headers) -> Result<Self, EnvelopeError> {
        Self::decode(bytes, headers, Uuid::new_v4)
    }

    /// Parses a consumed record as [`Envelope::from_record`] does, except
    /// that an event id neither the envelope nor the headers give is derived
    /// from the record's topic, partition and offset: every delivery of one
    /// record decodes to the same id, which duplicate detection and the ids
    /// of the results of a node that keeps state rest on.
    pub fn from_message(msg: &BusMessage) -> Result<Self, EnvelopeError> {
        Self::decode(&msg.value, &msg.headers, || Self::place_id(msg))
    }

    /// The event id of a record that carries none (in its envelope or its
    /// `message_id` header): derived from the record's place on the log, so
    /// the record delivered again has the same.
    pub fn place_id(msg: &BusMessage) -> Uuid {
        let place = format!("{}/{}/{}", msg.topic, msg.partition, msg.offset);
        Uuid::new_v5(&RECORD_ID_NAMESPACE, place.as_bytes())
    }

    fn decode(
        bytes: &[u8],
        headers: &Headers,
        missing_id: impl FnOnce() -> Uuid,
    ) -> Result<Self, EnvelopeError> {
        let mut wire: WireEnvelope = serde_json::from_slice(bytes)?;
        let metadata = wire.metadata.get_or_insert_with(Map::new);
        for (key, from_header) in [
            (trace::TRACE_ID, &headers.trace_id),
            (trace::SPAN_ID, &headers.span_id),
            (trace::PARENT_SPAN_ID, &headers.parent_span_id),
        ] {
            if let (false, Some(v)) = (metadata.contains_key(key), from_header) {
                metadata.insert(key.into(), Value::String(v.clone()));
            }
        }
        wire.correlation_id = wire.correlation_id.or(headers.correlation_id);
        wire.event_id = Some(
            wire.event_id
                .or(headers.message_id)
                .unwrap_or_else(missing_id),
        );
        Envelope::try_from(wire).map_err(|e| EnvelopeError(serde::de::Error::custom(e)))
    }

    /// The standard headers describing this envelope (the trace included).
    pub fn headers(&self) -> Headers {
        let text = |key: &str| {
            self.metadata
                .get(key)
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        Headers {
            content_type: Some(ENVELOPE_CONTENT_TYPE.to_string()),
            correlation_id: Some(self.correlation_id),
            message_id: Some(self.event_id),
            timestamp: Some(self.timestamp),
            source: Some(self.source.service.clone()),
            event_type: Some(self.event_type.clone()),
            schema_version: Some(self.version.clone()),
            trace_id: text(trace::TRACE_ID),
            span_id: text(trace::SPAN_ID),
            parent_span_id: text(trace::PARENT_SPAN_ID),
            ..Headers::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn source() -> EventSource {
        EventSource::new("node_x", "i-1").with_node_type("effect")
    }

    #[test]
    fn json_round_trip() {
        let mut e = Envelope::new("a.b", json!({"n": 1, "s": ["x"]}), source());
        e.metadata.insert("k".into(), json!("v"));
        let back = Envelope::from_bytes(&e.to_bytes()).unwrap();
        assert_eq!(back, e);
        let child = Envelope::caused_by(&e, "c", json!(null), source());
        assert_eq!(Envelope::from_bytes(&child.to_bytes()).unwrap(), child);
    }

    /// Every field of the ONEX standard envelope is written, null or not.
    #[test]
    fn encodes_every_standard_field() {
        let e = Envelope::new("a.b", json!(null), source());
        let v: Value = serde_json::from_slice(&e.to_bytes()).unwrap();
        for k in [
            "event_id",
            "event_type",
            "correlation_id",
            "causation_id",
            "timestamp",
            "version",
            "source",
            "metadata",
            "payload",
        ] {
            assert!(v.get(k).is_some(), "missing {k}");
        }
        assert_eq!(v["causation_id"], Value::Null);
        assert_eq!(v["version"], "1.0.0");
        assert_eq!(v["source"]["service"], "node_x");
        assert_eq!(v["source"]["instance_id"], "i-1");
        assert_eq!(v["source"]["node_type"], "effect");
        assert!(v["metadata"]["trace_id"].is_string());
        assert!(v["metadata"]["span_id"].is_string());
        let ts = v["timestamp"].as_str().unwrap();
        assert!(
            ts.ends_with('Z') && ts.len() == "2025-10-18T10:00:00.000000Z".len(),
            "{ts}"
        );
    }

    /// The legacy form: epoch-float timestamp, source with node_type and
    /// node_id, no version, metadata or causation id.
    #[test]
    fn decodes_the_epoch_seconds_form() {
        let cid = Uuid::new_v4();
        let raw =
            crate::testing::python_epoch_event("node.health.checked", cid, json!({"ok": true}));
        let e = Envelope::from_bytes(raw.to_string().as_bytes()).unwrap();
        assert_eq!(e.correlation_id, cid);
        assert_eq!(e.timestamp.to_rfc3339(), "2024-10-18T10:00:00.250+00:00");
        assert_eq!(e.source.node_type.as_deref(), Some("effect"));
        assert_eq!(e.source.node_id, "node-7");
        assert_eq!(e.source.instance_id, "");
        assert_eq!(e.version, ENVELOPE_VERSION);
        assert!(e.metadata.is_empty() && e.causation_id.is_none());
        // An integer count of seconds too.
        let int = json!({"event_type": "x", "timestamp": 1_729_245_600});
        let e = Envelope::from_bytes(int.to_string().as_bytes()).unwrap();
        assert_eq!(e.timestamp.timestamp(), 1_729_245_600);
    }

    /// The standard form of the ONEX services: ISO timestamp, source with
    /// instance_id and hostname, causation id and trace metadata.
    #[test]
    fn decodes_the_iso_form_with_metadata() {
        let raw = r#"{
          "event_id": "9b2f7a44-0c55-4f43-a4b3-2ad8c5a3c8e1",
          "event_type": "omninode.codegen.request.validate.v1",
          "correlation_id": "1b1e1c4d-6c39-4b6b-9d0e-0f3c1c1a2b3c",
          "causation_id": "7c9e6679-7425-40de-944b-e07fc1f90ae7",
          "timestamp": "2025-10-18T10:00:00.000Z",
          "version": "1.0.0",
          "source": {"service": "archon-intelligence", "instance_id": "instance-123", "hostname": "archon-abc"},
          "metadata": {"trace_id": "t-1", "span_id": "s-1", "user_id": "u", "tenant_id": null},
          "payload": {"code": "x"}
        }"#;
        let e = Envelope::from_bytes(raw.as_bytes()).unwrap();
        assert_eq!(
            e.causation_id,
            Some("7c9e6679-7425-40de-944b-e07fc1f90ae7".parse().unwrap())
        );
        assert_eq!(e.source.instance_id, "instance-123");
        assert_eq!(e.source.hostname.as_deref(), Some("archon-abc"));
        assert_eq!(e.source.node_id, "");
        assert_eq!(e.trace_id(), Some("t-1"));
        assert_eq!(e.metadata["user_id"], "u");
        assert_eq!(e.timestamp.timestamp(), 1_760_781_600);
        // Python's isoformat() of a naive datetime, and with an offset.
        for ts in [
            "2025-10-18T10:00:00.123456",
            "2025-10-18 10:00:00.123456",
            "2025-10-18T12:00:00.123456+02:00",
        ] {
            let raw = json!({"event_type": "x", "timestamp": ts});
            let e = Envelope::from_bytes(raw.to_string().as_bytes()).unwrap();
            assert_eq!(
                format_timestamp(&e.timestamp),
                "2025-10-18T10:00:00.123456Z"
            );
        }
    }

    #[test]
    fn missing_optional_fields_default() {
        let cid = Uuid::new_v4();
        let headers = Headers {
            correlation_id: Some(cid),
            trace_id: Some("from-header".into()),
            ..Headers::default()
        };
        let e = Envelope::from_record(br#"{"event_type": "only.type"}"#, &headers).unwrap();
        assert_eq!(e.correlation_id, cid);
        assert_eq!(e.trace_id(), Some("from-header"));
        assert_eq!(e.payload, Value::Null);
        assert_eq!(e.source, EventSource::default());
        let age = Utc::now() - e.timestamp;
        assert!(age.num_seconds().abs() < 5);
        // The envelope's own trace wins over the header's.
        let own = json!({"event_type": "x", "metadata": {"trace_id": "own"}});
        let e = Envelope::from_record(own.to_string().as_bytes(), &headers).unwrap();
        assert_eq!(e.trace_id(), Some("own"));
        // A plain service name as source; null causation and metadata.
        let plain = json!({"event_type": "x", "source": "node/postgres", "causation_id": null, "metadata": null});
        let e = Envelope::from_bytes(plain.to_string().as_bytes()).unwrap();
        assert_eq!(e.source.service, "node/postgres");
        // A broadcast or group command.
        let command = json!({"command": "reload", "payload": {"scope": "all"}});
        let e = Envelope::from_record(command.to_string().as_bytes(), &headers).unwrap();
        assert_eq!(e.event_type, "reload");
        assert_eq!(e.payload["scope"], "all");
        assert_eq!(e.correlation_id, cid);
    }

    #[test]
    fn caused_by_preserves_correlation_and_trace() {
        let mut parent = Envelope::new("a", json!({}), source());
        parent.metadata.insert("trace_id".into(), json!("t-in"));
        parent.metadata.insert("span_id".into(), json!("s-in"));
        let child = Envelope::caused_by(&parent, "b", json!({}), source());
        assert_eq!(child.correlation_id, parent.correlation_id);
        assert_eq!(child.causation_id, Some(parent.event_id));
        assert_ne!(child.event_id, parent.event_id);
        assert_eq!(child.trace_id(), Some("t-in"));
        assert_eq!(child.metadata["parent_span_id"], "s-in");
        assert_ne!(child.metadata["span_id"], "s-in");
        let h = child.headers();
        assert_eq!(h.trace_id.as_deref(), Some("t-in"));
        assert_eq!(h.parent_span_id.as_deref(), Some("s-in"));
    }

    #[test]
    fn rejects_non_envelopes() {
        assert!(Envelope::from_bytes(b"{\"hello\": 1}").is_err());
        assert!(Envelope::from_bytes(b"not json").is_err());
        assert!(Envelope::from_bytes(br#"{"event_type": "x", "timestamp": "yesterday"}"#).is_err());
        assert!(Envelope::from_bytes(br#"{"event_type": "x", "timestamp": [1]}"#).is_err());
        assert!(Envelope::from_bytes(br#"{"event_type": "x", "event_id": "nope"}"#).is_err());
    }

    #[test]
    fn headers_describe_the_envelope() {
        let e = Envelope::new("a.b", json!({}), source());
        let h = e.headers();
        assert_eq!(h.correlation_id, Some(e.correlation_id));
        assert_eq!(h.message_id, Some(e.event_id));
        assert_eq!(h.event_type.as_deref(), Some("a.b"));
        assert_eq!(h.content_type.as_deref(), Some(ENVELOPE_CONTENT_TYPE));
        assert_eq!(h.trace_id.as_deref(), e.trace_id());
    }
}
