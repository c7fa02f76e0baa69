//! Message headers carried alongside every event on the bus.
//!
//! On Kafka each field travels as one record header whose value is the UTF-8
//! text of the field (absent fields are not sent). Header names are the field
//! names below (`correlation_id`, `event_type`, ...). Headers this crate does
//! not know are kept in [`Headers::extra`] so that nothing is lost when a
//! message is forwarded (for example to a dead-letter topic and back).
//!
//! A Kafka record's headers are a list, not a map: a name may come more
//! than once, and values are bytes. [`RawHeaders`] is that list as it
//! travelled; [`Headers`] is the typed view of it, in which a repeated name
//! has its last value (see [`Headers::from_pairs`]).

use std::collections::BTreeMap;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use uuid::Uuid;

crate::named_enum! {
    /// Delivery priority of a message, by its wire spelling (`as_str`,
    /// `Display`, `from_name`).
    #[derive(Default)]
    pub enum Priority {
        /// Background work.
        Low = "low",
        /// The default.
        #[default]
        Normal = "normal",
        /// Ahead of normal traffic.
        High = "high",
        /// Must be handled first.
        Critical = "critical",
    }
}

impl FromStr for Priority {
    type Err = HeaderError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Priority::from_name(s).ok_or_else(|| HeaderError::Invalid {
            name: "priority".into(),
            value: s.into(),
        })
    }
}

/// A header value that could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HeaderError {
    /// The named header has a value of the wrong shape.
    #[error("header `{name}` has an invalid value `{value}`")]
    Invalid {
        /// Header name.
        name: String,
        /// The offending value (lossy UTF-8).
        value: String,
    },
}

/// Well-known header names, as they appear on the wire.
pub mod names {
    /// MIME type of the value.
    pub const CONTENT_TYPE: &str = "content_type";
    /// Correlation id shared by every message of one flow.
    pub const CORRELATION_ID: &str = "correlation_id";
    /// Unique id of this message (the envelope's event_id).
    pub const MESSAGE_ID: &str = "message_id";
    /// RFC 3339 timestamp with time zone.
    pub const TIMESTAMP: &str = "timestamp";
    /// Producing service.
    pub const SOURCE: &str = "source";
    /// Event type.
    pub const EVENT_TYPE: &str = "event_type";
    /// Schema version of the payload.
    pub const SCHEMA_VERSION: &str = "schema_version";
    /// Intended recipient.
    pub const DESTINATION: &str = "destination";
    /// Distributed trace id.
    pub const TRACE_ID: &str = "trace_id";
    /// Span id.
    pub const SPAN_ID: &str = "span_id";
    /// Parent span id.
    pub const PARENT_SPAN_ID: &str = "parent_span_id";
    /// Operation name for tracing.
    pub const OPERATION_NAME: &str = "operation_name";
    /// Priority (`low|normal|high|critical`).
    pub const PRIORITY: &str = "priority";
    /// Routing key.
    pub const ROUTING_KEY: &str = "routing_key";
    /// Partition key.
    pub const PARTITION_KEY: &str = "partition_key";
    /// How many times delivery of this message has been retried.
    pub const RETRY_COUNT: &str = "retry_count";
    /// Retry budget.
    pub const MAX_RETRIES: &str = "max_retries";
    /// Time to live in seconds.
    pub const TTL_SECONDS: &str = "ttl_seconds";
}

/// The standard ONEX message headers.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Headers {
    /// MIME type of the value, `application/json` for envelopes.
    pub content_type: Option<String>,
    /// Correlation id shared by every message of one flow.
    pub correlation_id: Option<Uuid>,
    /// Unique id of this message.
    pub message_id: Option<Uuid>,
    /// When the message was produced.
    pub timestamp: Option<DateTime<Utc>>,
    /// Producing service.
    pub source: Option<String>,
    /// Event type.
    pub event_type: Option<String>,
    /// Schema version of the payload.
    pub schema_version: Option<String>,
    /// Intended recipient.
    pub destination: Option<String>,
    /// Distributed trace id.
    pub trace_id: Option<String>,
    /// Span id.
    pub span_id: Option<String>,
    /// Parent span id.
    pub parent_span_id: Option<String>,
    /// Operation name.
    pub operation_name: Option<String>,
    /// Priority; `None` means normal.
    pub priority: Option<Priority>,
    /// Routing key.
    pub routing_key: Option<String>,
    /// Partition key.
    pub partition_key: Option<String>,
    /// Delivery retries so far.
    pub retry_count: Option<u32>,
    /// Retry budget.
    pub max_retries: Option<u32>,
    /// Time to live in seconds.
    pub ttl_seconds: Option<u64>,
    /// Headers not in the list above, kept verbatim.
    pub extra: BTreeMap<String, String>,
}

impl Headers {
    /// Encodes every present field as a `(name, value)` pair, known fields
    /// first in declaration order, then `extra` in name order. An `extra`
    /// entry named like a known field that is present is left out, so a
    /// header never goes on the wire twice (extras can carry known names when
    /// a record's headers could not be decoded and were kept verbatim).
    pub fn to_pairs(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut put = |name: &str, value: Option<String>| {
            if let Some(v) = value {
                out.push((name.to_string(), v));
            }
        };
        put(names::CONTENT_TYPE, self.content_type.clone());
        put(
            names::CORRELATION_ID,
            self.correlation_id.map(|u| u.to_string()),
        );
        put(names::MESSAGE_ID, self.message_id.map(|u| u.to_string()));
        put(
            names::TIMESTAMP,
            self.timestamp
                .as_ref()
                .map(crate::envelope::format_timestamp),
        );
        put(names::SOURCE, self.source.clone());
        put(names::EVENT_TYPE, self.event_type.clone());
        put(names::SCHEMA_VERSION, self.schema_version.clone());
        put(names::DESTINATION, self.destination.clone());
        put(names::TRACE_ID, self.trace_id.clone());
        put(names::SPAN_ID, self.span_id.clone());
        put(names::PARENT_SPAN_ID, self.parent_span_id.clone());
        put(names::OPERATION_NAME, self.operation_name.clone());
        put(names::PRIORITY, self.priority.map(|p| p.to_string()));
        put(names::ROUTING_KEY, self.routing_key.clone());
        put(names::PARTITION_KEY, self.partition_key.clone());
        put(names::RETRY_COUNT, self.retry_count.map(|n| n.to_string()));
        put(names::MAX_RETRIES, self.max_retries.map(|n| n.to_string()));
        put(names::TTL_SECONDS, self.ttl_seconds.map(|n| n.to_string()));
        let known = out.len();
        for (k, v) in &self.extra {
            if !out[..known].iter().any(|(name, _)| name == k) {
                out.push((k.clone(), v.clone()));
            }
        }
        out
    }

    /// Decodes headers from `(name, raw value)` pairs. Unknown names land in
    /// `extra`; a known header with a malformed value is an error.
    ///
    /// A name that comes more than once is read from its last value alone,
    /// as if the earlier ones were not there: the last value wins, as it
    /// does for the ONEX Python services (`dict(record.headers)`). Every
    /// value, in order, stays in the message's [`RawHeaders`].
    pub fn from_pairs<'a, I>(pairs: I) -> Result<Self, HeaderError>
    where
        I: IntoIterator<Item = (&'a str, &'a [u8])>,
    {
        let mut h = Headers::default();
        for (name, raw) in last_of_each(pairs) {
            h.set(name, raw)?;
        }
        Ok(h)
    }

    /// Decodes headers as [`Headers::from_pairs`] does, except that a known
    /// header with a malformed value (a `retry_count` of `-1`, a
    /// `correlation_id` that is no UUID) is kept verbatim in `extra`, and
    /// reported, instead of failing the others: a consumer still reads the
    /// correlation id and trace of a record one of whose headers is off. A
    /// repeated name has its last value, as in [`Headers::from_pairs`], even
    /// when that one is malformed and an earlier one is not.
    pub fn from_pairs_lenient<'a, I>(pairs: I) -> (Self, Vec<HeaderError>)
    where
        I: IntoIterator<Item = (&'a str, &'a [u8])>,
    {
        let mut h = Headers::default();
        let mut malformed = Vec::new();
        for (name, raw) in last_of_each(pairs) {
            if let Err(e) = h.set(name, raw) {
                h.extra
                    .insert(name.to_string(), String::from_utf8_lossy(raw).into_owned());
                malformed.push(e);
            }
        }
        (h, malformed)
    }

    /// Sets the field of the header `name` from its raw value (`extra` for
    /// a name this crate does not know); a malformed value changes nothing.
    fn set(&mut self, name: &str, raw: &[u8]) -> Result<(), HeaderError> {
        let value = String::from_utf8_lossy(raw).into_owned();
        let invalid = || HeaderError::Invalid {
            name: name.to_string(),
            value: value.clone(),
        };
        let h = self;
        match name {
            names::CONTENT_TYPE => h.content_type = Some(value.clone()),
            names::CORRELATION_ID => h.correlation_id = Some(value.parse().map_err(|_| invalid())?),
            names::MESSAGE_ID => h.message_id = Some(value.parse().map_err(|_| invalid())?),
            names::TIMESTAMP => {
                h.timestamp = Some(crate::envelope::parse_timestamp(&value).ok_or_else(invalid)?)
            }
            names::SOURCE => h.source = Some(value.clone()),
            names::EVENT_TYPE => h.event_type = Some(value.clone()),
            names::SCHEMA_VERSION => h.schema_version = Some(value.clone()),
            names::DESTINATION => h.destination = Some(value.clone()),
            names::TRACE_ID => h.trace_id = Some(value.clone()),
            names::SPAN_ID => h.span_id = Some(value.clone()),
            names::PARENT_SPAN_ID => h.parent_span_id = Some(value.clone()),
            names::OPERATION_NAME => h.operation_name = Some(value.clone()),
            names::PRIORITY => h.priority = Some(value.parse()?),
            names::ROUTING_KEY => h.routing_key = Some(value.clone()),
            names::PARTITION_KEY => h.partition_key = Some(value.clone()),
            names::RETRY_COUNT => h.retry_count = Some(value.parse().map_err(|_| invalid())?),
            names::MAX_RETRIES => h.max_retries = Some(value.parse().map_err(|_| invalid())?),
            names::TTL_SECONDS => h.ttl_seconds = Some(value.parse().map_err(|_| invalid())?),
            other => {
                h.extra.insert(other.to_string(), value);
            }
        }
        Ok(())
    }

    /// Sets an extra (non-standard) header.
    pub fn with_extra(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.extra.insert(name.into(), value.into());
        self
    }
}

/// The last value of each name: the typed view's rule for a name that a
/// record's headers repeat.
fn last_of_each<'a, I>(pairs: I) -> BTreeMap<&'a str, &'a [u8]>
where
    I: IntoIterator<Item = (&'a str, &'a [u8])>,
{
    pairs.into_iter().collect()
}

/// A record's headers as they travel on Kafka: `(name, value)` pairs in the
/// record's order, a name as often as it came, each value as its bytes
/// (which need not be UTF-8). [`Headers`] is the typed view of them.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct RawHeaders(Vec<(String, Vec<u8>)>);

/// `[("name", b"value"), ...]`, the values as escaped byte strings.
impl std::fmt::Debug for RawHeaders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        struct Bytes<'a>(&'a [u8]);
        impl std::fmt::Debug for Bytes<'_> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "b\"{}\"", self.0.escape_ascii())
            }
        }
        f.debug_list()
            .entries(self.0.iter().map(|(k, v)| (k, Bytes(v))))
            .finish()
    }
}

impl RawHeaders {
    /// No headers.
    pub fn new() -> Self {
        RawHeaders::default()
    }

    /// Appends a header (after any of the same name).
    pub fn push(&mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) {
        self.0.push((name.into(), value.into()));
    }

    /// These headers with one more at the end.
    pub fn with(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.push(name, value);
        self
    }

    /// Every `(name, value)` pair, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_slice()))
    }

    /// Every value of `name`, in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> {
        self.iter().filter(move |(k, _)| *k == name).map(|(_, v)| v)
    }

    /// Whether there is a header named `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.get_all(name).next().is_some()
    }

    /// How many headers there are (a repeated name counts each time).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The typed view, as [`Headers::from_pairs_lenient`] reads it (a
    /// repeated name has its last value), and the malformed known headers.
    pub fn decode(&self) -> (Headers, Vec<HeaderError>) {
        Headers::from_pairs_lenient(self.iter())
    }
}

impl From<&Headers> for RawHeaders {
    /// The typed headers as they go on the wire ([`Headers::to_pairs`]).
    fn from(h: &Headers) -> Self {
        h.to_pairs()
            .into_iter()
            .map(|(k, v)| (k, v.into_bytes()))
            .collect()
    }
}

impl FromIterator<(String, Vec<u8>)> for RawHeaders {
    fn from_iter<T: IntoIterator<Item = (String, Vec<u8>)>>(iter: T) -> Self {
        RawHeaders(iter.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> Headers {
        Headers {
            content_type: Some("application/json".into()),
            correlation_id: Some(Uuid::new_v4()),
            message_id: Some(Uuid::new_v4()),
            timestamp: Some(
                DateTime::parse_from_rfc3339("2025-01-02T03:04:05.123+02:00")
                    .expect("valid")
                    .with_timezone(&Utc),
            ),
            source: Some("svc".into()),
            event_type: Some("thing.created".into()),
            schema_version: Some("1.0.0".into()),
            destination: Some("node_y".into()),
            trace_id: Some("t".into()),
            span_id: Some("s".into()),
            parent_span_id: Some("p".into()),
            operation_name: Some("op".into()),
            priority: Some(Priority::Critical),
            routing_key: Some("r".into()),
            partition_key: Some("k".into()),
            retry_count: Some(2),
            max_retries: Some(3),
            ttl_seconds: Some(60),
            extra: BTreeMap::from([("x-custom".to_string(), "v".to_string())]),
        }
    }

    #[test]
    fn round_trip_keeps_every_field() {
        let h = full();
        let pairs = h.to_pairs();
        assert_eq!(pairs.len(), 19);
        let back =
            Headers::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_bytes()))).unwrap();
        assert_eq!(back, h);
    }

    #[test]
    fn a_present_field_wins_over_an_extra_of_the_same_name() {
        // Headers kept verbatim (they did not decode) and then given a real
        // correlation id and retry count, as a dead letter is.
        let id = Uuid::new_v4();
        let h = Headers {
            correlation_id: Some(id),
            retry_count: Some(0),
            extra: BTreeMap::from([
                ("correlation_id".to_string(), "garbage".to_string()),
                ("retry_count".to_string(), "7".to_string()),
                ("message_id".to_string(), "kept".to_string()),
            ]),
            ..Headers::default()
        };
        assert_eq!(
            h.to_pairs(),
            vec![
                ("correlation_id".to_string(), id.to_string()),
                ("retry_count".to_string(), "0".to_string()),
                ("message_id".to_string(), "kept".to_string()),
            ]
        );
    }

    /// The header set an ONEX Python service writes for a `ModelEventHeaders`
    /// (every field as UTF-8 text, `datetime.isoformat()` timestamps).
    #[test]
    fn decodes_the_python_services_header_set() {
        let cid = Uuid::new_v4();
        let mid = Uuid::new_v4();
        let cid_text = cid.to_string();
        let mid_text = mid.to_string();
        let pairs: Vec<(&str, &[u8])> = vec![
            ("content_type", b"application/json"),
            ("correlation_id", cid_text.as_bytes()),
            ("message_id", mid_text.as_bytes()),
            ("timestamp", b"2025-10-18T10:00:00.123456+00:00"),
            ("source", b"order-service"),
            ("event_type", b"order.created"),
            ("schema_version", b"1.0.0"),
            ("priority", b"high"),
            ("retry_count", b"1"),
            ("max_retries", b"3"),
            ("destination", b"billing"),
            ("trace_id", b"trace-1"),
            ("span_id", b"span-2"),
            ("parent_span_id", b"span-1"),
            ("operation_name", b"create_order"),
            ("routing_key", b"orders.us-east"),
            ("partition_key", b"order-42"),
            ("ttl_seconds", b"300"),
        ];
        let h = Headers::from_pairs(pairs.iter().copied()).unwrap();
        assert!(h.extra.is_empty(), "{:?}", h.extra);
        assert_eq!(h.correlation_id, Some(cid));
        assert_eq!(h.message_id, Some(mid));
        assert_eq!(h.priority, Some(Priority::High));
        assert_eq!(h.retry_count, Some(1));
        assert_eq!(h.max_retries, Some(3));
        assert_eq!(h.ttl_seconds, Some(300));
        assert_eq!(h.destination.as_deref(), Some("billing"));
        assert_eq!(h.routing_key.as_deref(), Some("orders.us-east"));
        assert_eq!(h.parent_span_id.as_deref(), Some("span-1"));
        assert_eq!(h.operation_name.as_deref(), Some("create_order"));
        // Written back, every value is the one read.
        let again = h.to_pairs();
        for (name, value) in &pairs {
            let written = again.iter().find(|(n, _)| n == name).expect(name);
            if *name == "timestamp" {
                assert_eq!(written.1, "2025-10-18T10:00:00.123456Z");
            } else {
                assert_eq!(written.1.as_bytes(), *value, "{name}");
            }
        }
        // A naive timestamp is read as UTC.
        let naive =
            Headers::from_pairs([("timestamp", b"2025-10-18T10:00:00".as_slice())]).unwrap();
        assert_eq!(naive.timestamp.unwrap().timestamp(), 1_760_781_600);
    }

    #[test]
    fn absent_fields_are_not_sent() {
        assert!(Headers::default().to_pairs().is_empty());
    }

    #[test]
    fn malformed_known_header_is_an_error() {
        let err = Headers::from_pairs([("retry_count", b"many".as_slice())]).unwrap_err();
        assert_eq!(
            err,
            HeaderError::Invalid {
                name: "retry_count".into(),
                value: "many".into()
            }
        );
        assert!(Headers::from_pairs([("priority", b"urgent".as_slice())]).is_err());
    }

    #[test]
    fn lenient_decoding_keeps_the_well_formed_headers() {
        let cid = Uuid::new_v4();
        let cid_text = cid.to_string();
        let pairs: Vec<(&str, &[u8])> = vec![
            ("correlation_id", cid_text.as_bytes()),
            ("retry_count", b"-1"),
            ("trace_id", b"t-1"),
            ("priority", b"URGENT"),
        ];
        assert!(Headers::from_pairs(pairs.iter().copied()).is_err());
        let (h, malformed) = Headers::from_pairs_lenient(pairs.iter().copied());
        assert_eq!(h.correlation_id, Some(cid));
        assert_eq!(h.trace_id.as_deref(), Some("t-1"));
        assert_eq!(h.retry_count, None);
        assert_eq!(h.extra["retry_count"], "-1");
        assert_eq!(h.extra["priority"], "URGENT");
        assert_eq!(malformed.len(), 2);
        // Written again, every header is as it came.
        let mut again = h.to_pairs();
        again.sort();
        let mut expected: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v).into_owned()))
            .collect();
        expected.sort();
        assert_eq!(again, expected);
    }

    #[test]
    fn a_repeated_name_has_its_last_value_in_the_typed_view() {
        let first = Uuid::new_v4().to_string();
        let last = Uuid::new_v4().to_string();
        let raw = RawHeaders::new()
            .with("correlation_id", first.as_str())
            .with("x-hop", "a")
            .with("correlation_id", last.as_str())
            .with("x-hop", vec![0xff, b'b'])
            .with("x-hop", "c");
        assert_eq!(raw.len(), 5);
        assert!(format!("{raw:?}").ends_with(r#"("x-hop", b"\xffb"), ("x-hop", b"c")]"#));
        let hops: Vec<&[u8]> = raw.get_all("x-hop").collect();
        assert_eq!(hops, [&b"a"[..], &[0xff, b'b'][..], &b"c"[..]]);
        let (h, malformed) = raw.decode();
        assert!(malformed.is_empty(), "{malformed:?}");
        assert_eq!(h.correlation_id.map(|c| c.to_string()), Some(last.clone()));
        assert_eq!(h.extra["x-hop"], "c");
        assert_eq!(Headers::from_pairs(raw.iter()).unwrap(), h);
        // The last value wins even when it is malformed and an earlier one
        // is not: the view is the one its last value alone gives.
        let raw = RawHeaders::new()
            .with("retry_count", "2")
            .with("retry_count", "-1");
        let (h, malformed) = raw.decode();
        assert_eq!(h.retry_count, None);
        assert_eq!(h.extra["retry_count"], "-1");
        assert_eq!(malformed.len(), 1);
        assert!(Headers::from_pairs(raw.iter()).is_err());
        assert_eq!(
            format!("{raw:?}"),
            r#"[("retry_count", b"2"), ("retry_count", b"-1")]"#
        );
        // And a malformed earlier value is not read at all.
        let raw = RawHeaders::new()
            .with("retry_count", "-1")
            .with("retry_count", "2");
        assert_eq!(
            Headers::from_pairs(raw.iter()).unwrap().retry_count,
            Some(2)
        );
    }

    #[test]
    fn priority_spellings() {
        for p in [
            Priority::Low,
            Priority::Normal,
            Priority::High,
            Priority::Critical,
        ] {
            assert_eq!(p.as_str().parse::<Priority>().unwrap(), p);
        }
    }
}
