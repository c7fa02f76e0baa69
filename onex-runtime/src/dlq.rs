//! Dead-letter messages.
//!
//! A dead letter is the original record, byte for byte (same key, same
//! value, same headers), republished to the dead-letter topic with these
//! extra headers describing the failure:
//!
//! | header | meaning |
//! |---|---|
//! | `dlq_original_topic` | topic the message was consumed from |
//! | `dlq_original_partition`, `dlq_original_offset` | its position there |
//! | `dlq_consumer_group` | the group that gave up on it |
//! | `dlq_reason` | the failure message |
//! | `dlq_error_type` | `invalid_input`, `retriable`, `fatal`, `decode_error`, `timeout` or `circuit_open` |
//! | `dlq_retry_count` | retries made before giving up (also in the standard `retry_count` header) |
//! | `dlq_failed_at` | RFC 3339 time of the final failure |
//! | `dlq_node` | node name |
//!
//! The standard `correlation_id` header is kept (or taken from the envelope
//! when the original record had none), so a dead letter can be traced, and
//! the message can be replayed unchanged onto its original topic.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::bus::{BusMessage, OutgoingMessage};

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

/// The dead letter for `original`, to be published to `dlq_topic`.
pub fn dead_letter(
    original: &BusMessage,
    dlq_topic: &str,
    group: &str,
    node: &str,
    failure: &Failure,
) -> OutgoingMessage {
    let mut headers = original.headers.clone();
    if headers.correlation_id.is_none() {
        headers.correlation_id = failure.correlation_id;
    }
    headers.retry_count = Some(failure.retry_count);
    let extra = [
        (names::ORIGINAL_TOPIC, original.topic.clone()),
        (names::ORIGINAL_PARTITION, original.partition.to_string()),
        (names::ORIGINAL_OFFSET, original.offset.to_string()),
        (names::CONSUMER_GROUP, group.to_string()),
        (names::REASON, failure.reason.clone()),
        (names::ERROR_TYPE, failure.error_type.clone()),
        (names::RETRY_COUNT, failure.retry_count.to_string()),
        (names::FAILED_AT, failure.failed_at.to_rfc3339()),
        (names::NODE, node.to_string()),
    ];
    for (k, v) in extra {
        headers.extra.insert(k.to_string(), v);
    }
    OutgoingMessage {
        topic: dlq_topic.to_string(),
        key: original.key.clone(),
        value: original.value.clone(),
        headers,
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
}

/// Reads the dead-letter headers of `msg`; `None` if it is not a dead letter.
pub fn inspect(msg: &BusMessage) -> Option<DeadLetterInfo> {
    let extra = &msg.headers.extra;
    Some(DeadLetterInfo {
        original_topic: extra.get(names::ORIGINAL_TOPIC)?.clone(),
        error_type: extra.get(names::ERROR_TYPE).cloned(),
        reason: extra.get(names::REASON).cloned(),
        retry_count: extra.get(names::RETRY_COUNT).and_then(|v| v.parse().ok()),
    })
}

/// The message to replay a dead letter onto its original topic: the
/// original record with the dead-letter headers removed.
pub fn replay(msg: &BusMessage) -> Option<OutgoingMessage> {
    let info = inspect(msg)?;
    let mut headers = msg.headers.clone();
    headers.extra.retain(|k, _| !k.starts_with("dlq_"));
    headers.retry_count = None;
    Some(OutgoingMessage {
        topic: info.original_topic,
        key: msg.key.clone(),
        value: msg.value.clone(),
        headers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::headers::Headers;

    #[test]
    fn dead_letter_round_trip() {
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
        };
        let failure = Failure {
            error_type: "fatal".into(),
            reason: "boom".into(),
            retry_count: 3,
            failed_at: Utc::now(),
            correlation_id: Some(cid),
        };
        let dl = dead_letter(&original, "onex.evt.a.b.v1.dlq", "g", "node", &failure);
        assert_eq!(dl.value, original.value);
        assert_eq!(dl.key, original.key);
        assert_eq!(dl.headers.correlation_id, Some(cid));
        assert_eq!(dl.headers.retry_count, Some(3));
        assert_eq!(dl.headers.extra["dlq_original_offset"], "41");

        let delivered = BusMessage {
            topic: dl.topic.clone(),
            partition: 0,
            offset: 0,
            key: dl.key.clone(),
            value: dl.value.clone(),
            headers: dl.headers.clone(),
        };
        let info = inspect(&delivered).unwrap();
        assert_eq!(info.original_topic, "onex.evt.a.b.v1");
        assert_eq!(info.error_type.as_deref(), Some("fatal"));
        assert_eq!(info.retry_count, Some(3));
        let back = replay(&delivered).unwrap();
        assert_eq!(back.topic, original.topic);
        assert_eq!(back.value, original.value);
        assert_eq!(
            back.headers.extra.get("x-custom").map(String::as_str),
            Some("1")
        );
        assert!(back.headers.extra.keys().all(|k| !k.starts_with("dlq_")));
        assert!(inspect(&original).is_none());
    }
}
