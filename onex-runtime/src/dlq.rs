//! Dead-letter messages.
//!
//! A dead letter's value is the JSON document the ONEX services write to
//! their dead-letter topics:
//!
//! ```json
//! {
//!   "original_topic": "onex.cmd.x.do.v1",
//!   "original_message": {
//!     "key": "k", "value": "{...}", "offset": 41, "partition": 0,
//!     "headers": {"correlation_id": "1b1e1c4d-...", "x-hop": "b"},
//!     "header_list": [
//!       {"name": "correlation_id", "value": "1b1e1c4d-..."},
//!       {"name": "x-hop", "value": "a"},
//!       {"name": "x-blob", "value": "/wD+", "encoding": "base64"},
//!       {"name": "x-hop", "value": "b"}
//!     ]
//!   },
//!   "failure_reason": "fatal failure: ...",
//!   "failure_timestamp": "2025-10-18T10:00:00.123456Z",
//!   "correlation_id": "1b1e1c4d-...",
//!   "retry_count": 3,
//!   "error_type": "fatal",
//!   "consumer_group": "x",
//!   "node": "node_x_effect"
//! }
//! ```
//!
//! `key` and `value` are the original bytes as UTF-8 text; bytes that are
//! not UTF-8 are also kept exactly in `key_base64` / `value_base64`, and the
//! original record's headers in `original_message.header_list`, so that a
//! replay puts the very same record back. A record's headers are a list: a
//! name may come more than once and a value is bytes, so `header_list` has
//! every header in the record's order, each value as UTF-8 text or, when it
//! is not UTF-8, as base64 with `"encoding": "base64"`. `headers` is the
//! same as a map (a repeated name has its last value, the typed view's
//! rule), for readers that know only it; dead letters written before
//! `header_list` existed, and those of the ONEX Python services, replay
//! from `headers`. `error_type` is one of
//! `invalid_input`, `retriable`, `fatal`, `decode_error`, `timeout`,
//! `circuit_open`, `publish_failed` (the bus refused a result as it is;
//! one it cannot take for now is published later instead), `state_too_large` (the state the
//! input would leave is larger than the bus takes, so it was not applied)
//! or `window_too_large` (the record of a closed aggregation window is
//! larger than the bus takes, so it was never published: `original_topic`
//! is where it was to go, and the document has no partition or offset).
//!
//! The record keeps the original key and headers (in their order, repeats
//! included, but for `content_type`, `retry_count` and `correlation_id`,
//! which it sets) and repeats the document in `dlq_*` headers ([`names`]),
//! so tools that read headers only still see why a message failed.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::bus::{BusMessage, OutgoingMessage};
use crate::envelope::format_timestamp;
use crate::headers::names::CORRELATION_ID;
use crate::headers::{Headers, RawHeaders};

/// Header names added to dead letters.
pub mod names {
    /// Original topic.
    pub const ORIGINAL_TOPIC: &str = "dlq_original_topic";
    /// Original partition.
    pub const ORIGINAL_PARTITION: &str = "dlq_original_partition";
    /// Original offset.
    pub const ORIGINAL_OFFSET: &str = "dlq_original_offset";
    /// Consumer group.
    pub const CONSUMER_GROUP: &str = "dlq_consumer_group";
    /// Failure message.
    pub const REASON: &str = "dlq_reason";
    /// Failure class.
    pub const ERROR_TYPE: &str = "dlq_error_type";
    /// Retries made.
    pub const RETRY_COUNT: &str = "dlq_retry_count";
    /// Time of the final failure.
    pub const FAILED_AT: &str = "dlq_failed_at";
    /// Node name.
    pub const NODE: &str = "dlq_node";
}

/// Why a message was dead-lettered.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// Failure class (see the module docs).
    pub error_type: String,
    /// Failure message.
    pub reason: String,
    /// Retries made.
    pub retry_count: u32,
    /// When it finally failed.
    pub failed_at: DateTime<Utc>,
    /// Correlation id of the message, if known.
    pub correlation_id: Option<Uuid>,
}

/// The consumed record inside a dead letter. Every field may be missing
/// from the document.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct OriginalMessage {
    /// The key as UTF-8 text (invalid bytes replaced), if there was one.
    pub key: Option<String>,
    /// The value as UTF-8 text (invalid bytes replaced).
    pub value: Option<String>,
    /// Offset in the original topic.
    pub offset: Option<i64>,
    /// Partition of the original topic.
    pub partition: Option<i32>,
    /// The exact key bytes, when they are not UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_base64: Option<String>,
    /// The exact value bytes, when they are not UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_base64: Option<String>,
    /// The original record's headers as a map (a repeated name has its
    /// last value); `header_list` has them all.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// The original record's headers in their order, a repeated name as
    /// often as it came, values that are not UTF-8 as base64. Absent from
    /// older dead letters, which [`DeadLetter::replay`] reads from
    /// `headers`, and from one without the record.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header_list: Option<Vec<HeaderEntry>>,
    /// The length of the value, when the dead letter left the key, value
    /// and headers out because with them it was larger than the broker
    /// takes; the record is then only in the original topic, at `partition`
    /// and `offset`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub omitted_value_bytes: Option<usize>,
}

/// The `encoding` of a [`HeaderEntry`] whose value is written as base64.
pub const BASE64_ENCODING: &str = "base64";

/// One header of the original record, in [`OriginalMessage::header_list`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeaderEntry {
    /// The header's name.
    pub name: String,
    /// The value as UTF-8 text, or as base64 when `encoding` says so.
    pub value: String,
    /// [`BASE64_ENCODING`] when the value is not UTF-8; absent for text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
}

impl HeaderEntry {
    /// The entry for one header: the value as text when it is UTF-8, else
    /// as base64.
    pub fn new(name: &str, value: &[u8]) -> Self {
        let (value, encoding) = match text_and_exact(value) {
            (text, None) => (text, None),
            (_, Some(base64)) => (base64, Some(BASE64_ENCODING.to_string())),
        };
        HeaderEntry {
            name: name.to_string(),
            value,
            encoding,
        }
    }

    /// The value's bytes; `None` when the encoding is not one this crate
    /// writes, or the base64 does not decode.
    pub fn bytes(&self) -> Option<Vec<u8>> {
        match self.encoding.as_deref() {
            None => Some(self.value.as_bytes().to_vec()),
            Some(BASE64_ENCODING) => BASE64.decode(&self.value).ok(),
            Some(_) => None,
        }
    }
}

/// The dead-letter document (the record's value).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Topic the message was consumed from, and is replayed onto.
    pub original_topic: String,
    /// The message itself.
    pub original_message: OriginalMessage,
    /// The failure message.
    #[serde(default)]
    pub failure_reason: String,
    /// When it finally failed (ISO 8601).
    #[serde(default)]
    pub failure_timestamp: Option<String>,
    /// Correlation id of the message, if known.
    #[serde(default)]
    pub correlation_id: Option<String>,
    /// Retries made before giving up.
    #[serde(default)]
    pub retry_count: Option<u32>,
    /// Failure class.
    #[serde(default)]
    pub error_type: Option<String>,
    /// The consumer group that gave up on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer_group: Option<String>,
    /// The node that gave up on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

fn text_and_exact(bytes: &[u8]) -> (String, Option<String>) {
    match std::str::from_utf8(bytes) {
        Ok(text) => (text.to_string(), None),
        Err(_) => (
            String::from_utf8_lossy(bytes).into_owned(),
            Some(BASE64.encode(bytes)),
        ),
    }
}

/// Whether `original` was read from its topic. A record the node could
/// never write (an aggregation window's, too large for the bus) is given
/// as one with a negative partition and offset.
fn was_written(original: &BusMessage) -> bool {
    original.partition >= 0 && original.offset >= 0
}

fn exact(text: Option<&String>, base64: Option<&String>) -> Option<Vec<u8>> {
    match base64.and_then(|b| BASE64.decode(b).ok()) {
        Some(bytes) => Some(bytes),
        None => text.map(|t| t.as_bytes().to_vec()),
    }
}

impl DeadLetter {
    /// The document for `original`, failed as `failure`.
    pub fn new(original: &BusMessage, group: &str, node: &str, failure: &Failure) -> Self {
        let (key, key_base64) = match original.key.as_deref().map(text_and_exact) {
            Some((text, exact)) => (Some(text), exact),
            None => (None, None),
        };
        let (value, value_base64) = text_and_exact(&original.value);
        let correlation_id = failure.correlation_id.or(original.headers.correlation_id);
        let written = was_written(original);
        DeadLetter {
            original_topic: original.topic.clone(),
            original_message: OriginalMessage {
                key,
                value: Some(value),
                offset: written.then_some(original.offset),
                partition: written.then_some(original.partition),
                key_base64,
                value_base64,
                headers: original.headers.to_pairs().into_iter().collect(),
                header_list: Some(
                    original
                        .wire_headers()
                        .iter()
                        .map(|(name, value)| HeaderEntry::new(name, value))
                        .collect(),
                ),
                omitted_value_bytes: None,
            },
            failure_reason: failure.reason.clone(),
            failure_timestamp: Some(format_timestamp(&failure.failed_at)),
            correlation_id: correlation_id.map(|c| c.to_string()),
            retry_count: Some(failure.retry_count),
            error_type: Some(failure.error_type.clone()),
            consumer_group: Some(group.to_string()),
            node: Some(node.to_string()),
        }
    }

    /// Reads a dead-letter record's value; `None` if it is not one.
    pub fn parse(value: &[u8]) -> Option<Self> {
        serde_json::from_slice(value).ok()
    }

    /// The JSON bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Plain data with string keys always serialises.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The message that puts the original record back on its topic: the
    /// same key, value and headers. The headers are those of `header_list`,
    /// in its order and with its repeats, sent exactly so; without it (an
    /// older dead letter, or one of an entry this crate cannot read) those
    /// of the `headers` map. Either way a `correlation_id` header is added
    /// when there is none and the document names a correlation id.
    pub fn replay(&self) -> OutgoingMessage {
        let m = &self.original_message;
        let value = exact(m.value.as_ref(), m.value_base64.as_ref()).unwrap_or_default();
        let key = exact(m.key.as_ref(), m.key_base64.as_ref());
        let correlation_id: Option<Uuid> =
            self.correlation_id.as_deref().and_then(|c| c.parse().ok());
        if let Some(mut raw) = self.listed_headers() {
            if let Some(cid) = correlation_id.filter(|_| !raw.contains(CORRELATION_ID)) {
                raw.push(CORRELATION_ID, cid.to_string());
            }
            let message = OutgoingMessage {
                topic: self.original_topic.clone(),
                key,
                value,
                headers: Headers::default(),
                raw_headers: None,
            };
            return message.with_raw_headers(raw);
        }
        let mut headers =
            Headers::from_pairs(m.headers.iter().map(|(k, v)| (k.as_str(), v.as_bytes())))
                .unwrap_or_else(|_| Headers {
                    extra: m.headers.clone(),
                    ..Headers::default()
                });
        if headers.correlation_id.is_none() {
            headers.correlation_id = correlation_id;
        }
        OutgoingMessage {
            topic: self.original_topic.clone(),
            key,
            value,
            headers,
            raw_headers: None,
        }
    }

    /// The headers of `header_list`, when it is there and every entry
    /// reads.
    fn listed_headers(&self) -> Option<RawHeaders> {
        self.original_message
            .header_list
            .as_ref()?
            .iter()
            .map(|h| Some((h.name.clone(), h.bytes()?)))
            .collect()
    }
}

/// The dead letter for `original`, to be published to `dlq_topic`: the
/// document as value, the original key, the original headers plus the
/// `dlq_*` headers ([`Letterhead::whole`]).
pub fn dead_letter(
    original: &BusMessage,
    dlq_topic: &str,
    group: &str,
    node: &str,
    failure: &Failure,
) -> OutgoingMessage {
    let head = Letterhead {
        dlq_topic,
        group,
        node,
    };
    head.whole(original, failure)
}

/// How much of the failure reason a dead letter without the record keeps
/// ([`Letterhead::without_record`]).
pub const COMPACT_REASON_CHARS: usize = 2000;

/// Where a node's dead letters go and whom they name: the dead-letter
/// topic, the consumer group and the node.
#[derive(Debug, Clone, Copy)]
pub struct Letterhead<'a> {
    /// The physical dead-letter topic.
    pub dlq_topic: &'a str,
    /// The consumer group that gave up on the record.
    pub group: &'a str,
    /// The node that gave up on it.
    pub node: &'a str,
}

impl Letterhead<'_> {
    /// The dead letter for `original`, failed as `failure`: the document
    /// as value, the original key, the original headers plus the `dlq_*`
    /// headers.
    pub fn whole(&self, original: &BusMessage, failure: &Failure) -> OutgoingMessage {
        let document = DeadLetter::new(original, self.group, self.node, failure);
        self.letter(original, &document, failure)
    }

    /// The dead letter for `original` when the whole one is larger than
    /// the broker takes. The whole one repeats the value as escaped text
    /// (and as base64 when it is not UTF-8) and the headers twice, so a
    /// record well under the limit can make one over it. This one leaves
    /// out the record's key, value and headers: the document gives the
    /// value's length in `omitted_value_bytes` and its place (topic,
    /// partition, offset) in the original topic, where the record stays
    /// (a record never written, such as an aggregation window's, has no
    /// place: the reason says so); the reason is cut to
    /// [`COMPACT_REASON_CHARS`] and says so. [`replay`] gives `None` for it.
    pub fn without_record(&self, original: &BusMessage, failure: &Failure) -> OutgoingMessage {
        let bare = BusMessage {
            topic: original.topic.clone(),
            partition: original.partition,
            offset: original.offset,
            key: None,
            value: Vec::new(),
            headers: Headers {
                correlation_id: original.headers.correlation_id,
                ..Headers::default()
            },
            raw_headers: RawHeaders::new(),
        };
        let reason: String = failure.reason.chars().take(COMPACT_REASON_CHARS).collect();
        let place = if was_written(original) {
            format!(
                "it is in {} partition {} at offset {}",
                original.topic, original.partition, original.offset
            )
        } else {
            format!("it was never written to {}", original.topic)
        };
        let failure = Failure {
            reason: format!(
                "{reason}; the record ({} bytes) is left out of this dead letter, too large \
                 with it: {place}",
                original.value.len(),
            ),
            ..failure.clone()
        };
        let mut document = DeadLetter::new(&bare, self.group, self.node, &failure);
        document.original_message.value = None;
        document.original_message.header_list = None;
        document.original_message.omitted_value_bytes = Some(original.value.len());
        self.letter(&bare, &document, &failure)
    }

    /// The record carrying `document`, the dead letter of `original`: the
    /// original's headers in their order, repeats included, but for those
    /// this one sets (content type, retry count, correlation id, `dlq_*`),
    /// which follow them.
    fn letter(
        &self,
        original: &BusMessage,
        document: &DeadLetter,
        failure: &Failure,
    ) -> OutgoingMessage {
        let mut own = Headers {
            correlation_id: original.headers.correlation_id.or(failure.correlation_id),
            content_type: Some(crate::envelope::ENVELOPE_CONTENT_TYPE.to_string()),
            retry_count: Some(failure.retry_count),
            ..Headers::default()
        };
        let place = was_written(original).then(|| {
            [
                (names::ORIGINAL_PARTITION, original.partition.to_string()),
                (names::ORIGINAL_OFFSET, original.offset.to_string()),
            ]
        });
        let extra = [
            (names::ORIGINAL_TOPIC, original.topic.clone()),
            (names::CONSUMER_GROUP, self.group.to_string()),
            (names::REASON, failure.reason.clone()),
            (names::ERROR_TYPE, failure.error_type.clone()),
            (names::RETRY_COUNT, failure.retry_count.to_string()),
            (names::FAILED_AT, format_timestamp(&failure.failed_at)),
            (names::NODE, self.node.to_string()),
        ];
        for (k, v) in extra.into_iter().chain(place.into_iter().flatten()) {
            own.extra.insert(k.to_string(), v);
        }
        let own = RawHeaders::from(&own);
        let mut headers: RawHeaders = original
            .wire_headers()
            .iter()
            .filter(|(name, _)| !own.contains(name))
            .map(|(name, value)| (name.to_string(), value.to_vec()))
            .collect();
        for (name, value) in own.iter() {
            headers.push(name, value);
        }
        let letter = OutgoingMessage {
            topic: self.dlq_topic.to_string(),
            key: original.key.clone(),
            value: document.to_bytes(),
            headers: Headers::default(),
            raw_headers: None,
        };
        letter.with_raw_headers(headers)
    }
}

/// What a dead letter says about itself.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetterInfo {
    /// Topic to replay onto.
    pub original_topic: String,
    /// Failure class.
    pub error_type: Option<String>,
    /// Failure message.
    pub reason: Option<String>,
    /// Retries made.
    pub retry_count: Option<u32>,
    /// Correlation id of the failed message.
    pub correlation_id: Option<Uuid>,
    /// Event type of the failed message, if it was an envelope.
    pub event_type: Option<String>,
}

/// Reads a dead letter; `None` if `msg` is not one.
pub fn inspect(msg: &BusMessage) -> Option<DeadLetterInfo> {
    let doc = DeadLetter::parse(&msg.value)?;
    let original = doc.replay();
    let event_type = original.headers.event_type.clone().or_else(|| {
        crate::envelope::Envelope::from_bytes(&original.value)
            .ok()
            .map(|e| e.event_type)
    });
    Some(DeadLetterInfo {
        original_topic: doc.original_topic,
        error_type: doc.error_type,
        reason: Some(doc.failure_reason).filter(|r| !r.is_empty()),
        retry_count: doc.retry_count,
        correlation_id: original.headers.correlation_id,
        event_type,
    })
}

/// The message to replay a dead letter onto its original topic; `None` if
/// `msg` is not a dead letter, or is one without the record
/// ([`Letterhead::without_record`]).
pub fn replay(msg: &BusMessage) -> Option<OutgoingMessage> {
    DeadLetter::parse(&msg.value)
        .filter(|d| d.original_message.omitted_value_bytes.is_none())
        .map(|d| d.replay())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn delivered(dl: &OutgoingMessage) -> BusMessage {
        BusMessage {
            topic: dl.topic.clone(),
            partition: 0,
            offset: 0,
            key: dl.key.clone(),
            value: dl.value.clone(),
            headers: dl.headers.clone(),
            raw_headers: dl.record().wire_headers(),
        }
    }

    #[test]
    fn dead_letter_document_and_replay() {
        let cid = Uuid::new_v4();
        let original = BusMessage {
            topic: "onex.evt.a.b.v1".into(),
            partition: 2,
            offset: 41,
            key: Some(b"k".to_vec()),
            value: b"{\"x\":1}".to_vec(),
            headers: Headers {
                event_type: Some("t".into()),
                ..Headers::default()
            }
            .with_extra("x-custom", "1"),
            raw_headers: RawHeaders::new(),
        };
        let failed_at = Utc::now();
        let failure = Failure {
            error_type: "fatal".into(),
            reason: "boom".into(),
            retry_count: 3,
            failed_at,
            correlation_id: Some(cid),
        };
        let dl = dead_letter(&original, "onex.evt.a.b.v1.dlq", "g", "node", &failure);
        assert_eq!(dl.key, original.key);
        assert_eq!(dl.headers.correlation_id, Some(cid));
        assert_eq!(dl.headers.extra["dlq_original_offset"], "41");
        let doc: Value = serde_json::from_slice(&dl.value).unwrap();
        assert_eq!(
            doc,
            json!({
                "original_topic": "onex.evt.a.b.v1",
                "original_message": {
                    "key": "k",
                    "value": "{\"x\":1}",
                    "offset": 41,
                    "partition": 2,
                    "headers": {"event_type": "t", "x-custom": "1"},
                    "header_list": [
                        {"name": "event_type", "value": "t"},
                        {"name": "x-custom", "value": "1"}
                    ]
                },
                "failure_reason": "boom",
                "failure_timestamp": format_timestamp(&failed_at),
                "correlation_id": cid.to_string(),
                "retry_count": 3,
                "error_type": "fatal",
                "consumer_group": "g",
                "node": "node"
            })
        );

        let info = inspect(&delivered(&dl)).unwrap();
        assert_eq!(info.original_topic, "onex.evt.a.b.v1");
        assert_eq!(info.error_type.as_deref(), Some("fatal"));
        assert_eq!(info.retry_count, Some(3));
        assert_eq!(info.event_type.as_deref(), Some("t"));
        let back = replay(&delivered(&dl)).unwrap();
        assert_eq!(back.topic, original.topic);
        assert_eq!(back.key, original.key);
        assert_eq!(back.value, original.value);
        assert_eq!(back.headers.event_type.as_deref(), Some("t"));
        assert_eq!(
            back.headers.extra.get("x-custom").map(String::as_str),
            Some("1")
        );
        assert!(back.headers.extra.keys().all(|k| !k.starts_with("dlq_")));
        assert!(inspect(&original).is_none());
    }

    #[test]
    fn bytes_that_are_not_utf8_replay_exactly() {
        let original = BusMessage {
            topic: "t".into(),
            partition: 0,
            offset: 1,
            key: Some(vec![0xff, 0x00]),
            value: vec![0x80, b'a', 0xfe],
            headers: Headers::default(),
            raw_headers: RawHeaders::new(),
        };
        let failure = Failure {
            error_type: "decode_error".into(),
            reason: "not json".into(),
            retry_count: 0,
            failed_at: Utc::now(),
            correlation_id: None,
        };
        let dl = dead_letter(&original, "t.dlq", "g", "n", &failure);
        let back = replay(&delivered(&dl)).unwrap();
        assert_eq!(back.key, original.key);
        assert_eq!(back.value, original.value);
    }

    /// A record the node never wrote (an aggregation window's, too large
    /// for the bus) comes with partition and offset -1: its dead letter
    /// names neither, and the one without the record says where it was to
    /// go instead of where it is.
    #[test]
    fn a_record_never_written_is_given_no_place() {
        let never = BusMessage {
            topic: "out".into(),
            partition: -1,
            offset: -1,
            key: Some(b"k".to_vec()),
            value: b"{}".to_vec(),
            headers: Headers::default(),
            raw_headers: RawHeaders::new(),
        };
        let failure = Failure {
            error_type: "window_too_large".into(),
            reason: "too large".into(),
            retry_count: 0,
            failed_at: Utc::now(),
            correlation_id: None,
        };
        let head = Letterhead {
            dlq_topic: "in.dlq",
            group: "g",
            node: "n",
        };
        let compact = head.without_record(&never, &failure);
        for letter in [head.whole(&never, &failure), compact.clone()] {
            let doc = DeadLetter::parse(&letter.value).unwrap();
            assert_eq!(doc.original_topic, "out");
            let m = &doc.original_message;
            assert_eq!((m.partition, m.offset), (None, None));
            for name in [names::ORIGINAL_PARTITION, names::ORIGINAL_OFFSET] {
                assert!(!letter.headers.extra.contains_key(name), "{name}");
            }
        }
        let doc = DeadLetter::parse(&compact.value).unwrap();
        assert!(
            doc.failure_reason.ends_with("it was never written to out"),
            "{}",
            doc.failure_reason
        );
    }

    fn failure() -> Failure {
        Failure {
            error_type: "fatal".into(),
            reason: "boom".into(),
            retry_count: 0,
            failed_at: Utc::now(),
            correlation_id: None,
        }
    }

    /// A record whose headers repeat a name, one value not UTF-8.
    fn hops() -> BusMessage {
        let raw = RawHeaders::new()
            .with("x-hop", "a")
            .with("content_type", "text/plain")
            .with("x-blob", vec![0xff, 0x00])
            .with("x-hop", "b");
        BusMessage {
            topic: "t".into(),
            partition: 0,
            offset: 3,
            key: Some(b"k".to_vec()),
            value: b"v".to_vec(),
            headers: raw.decode().0,
            raw_headers: raw,
        }
    }

    #[test]
    fn repeated_headers_are_listed_in_order_and_replayed_so() {
        let original = hops();
        let dl = dead_letter(&original, "t.dlq", "g", "n", &failure());
        let doc = DeadLetter::parse(&dl.value).unwrap();
        let m = &doc.original_message;
        assert_eq!(
            serde_json::to_value(&m.header_list).unwrap(),
            json!([
                {"name": "x-hop", "value": "a"},
                {"name": "content_type", "value": "text/plain"},
                {"name": "x-blob", "value": "/wA=", "encoding": "base64"},
                {"name": "x-hop", "value": "b"}
            ])
        );
        // The map has the last value of each name.
        assert_eq!(m.headers["x-hop"], "b");
        // The dead letter's own record keeps them too, in order, but for
        // the content type, which it sets.
        let own: Vec<(&str, &[u8])> = dl
            .raw_headers
            .as_ref()
            .unwrap()
            .iter()
            .filter(|(name, _)| !name.starts_with("dlq_"))
            .collect();
        assert_eq!(
            own,
            [
                ("x-hop", &b"a"[..]),
                ("x-blob", &[0xff, 0x00][..]),
                ("x-hop", &b"b"[..]),
                ("content_type", &b"application/json"[..]),
                ("retry_count", &b"0"[..]),
            ]
        );
        assert_eq!(dl.headers.extra["x-hop"], "b");
        let back = replay(&delivered(&dl)).unwrap();
        assert_eq!(back.raw_headers.as_ref(), Some(&original.raw_headers));
        assert_eq!(back.headers, original.headers);

        // An entry this crate cannot read: the map is replayed instead.
        let mut odd = doc.clone();
        if let Some(list) = odd.original_message.header_list.as_mut() {
            list[0].encoding = Some("rot13".into());
        }
        let back = odd.replay();
        assert_eq!(back.raw_headers, None);
        assert_eq!(back.headers.extra["x-hop"], "b");
    }

    #[test]
    fn a_dead_letter_without_the_record_lists_no_headers() {
        let original = hops();
        let head = Letterhead {
            dlq_topic: "t.dlq",
            group: "g",
            node: "n",
        };
        let dl = head.without_record(&original, &failure());
        let doc = DeadLetter::parse(&dl.value).unwrap();
        assert_eq!(doc.original_message.omitted_value_bytes, Some(1));
        assert_eq!(doc.original_message.header_list, None);
        assert_eq!(doc.original_message.key, None);
        assert!(!dl.raw_headers.as_ref().unwrap().contains("x-hop"));
        assert!(replay(&delivered(&dl)).is_none());
    }

    /// A dead letter written by an ONEX Python service: no headers inside,
    /// no exact bytes, a null key.
    #[test]
    fn reads_dead_letters_of_the_python_services() {
        let cid = Uuid::new_v4();
        let value = json!({
            "original_topic": "dev.orders.v1",
            "original_message": {"key": null, "value": "{\"event_type\": \"order.created\"}", "offset": 7, "partition": 0},
            "failure_reason": "ValueError: bad",
            "failure_type": "deserialization_error",
            "failure_timestamp": "2025-10-18T10:00:00.123456+00:00",
            "correlation_id": cid.to_string(),
            "retry_count": 0,
            "error_type": "ValueError"
        });
        let msg = BusMessage {
            topic: "dev.dlq.orders.v1".into(),
            partition: 0,
            offset: 0,
            key: None,
            value: value.to_string().into_bytes(),
            headers: Headers::default(),
            raw_headers: RawHeaders::new(),
        };
        let info = inspect(&msg).unwrap();
        assert_eq!(info.error_type.as_deref(), Some("ValueError"));
        assert_eq!(info.correlation_id, Some(cid));
        assert_eq!(info.event_type.as_deref(), Some("order.created"));
        let back = replay(&msg).unwrap();
        assert_eq!(back.topic, "dev.orders.v1");
        assert_eq!(back.key, None);
        assert_eq!(back.value, b"{\"event_type\": \"order.created\"}");
        assert_eq!(back.headers.correlation_id, Some(cid));
    }
}
