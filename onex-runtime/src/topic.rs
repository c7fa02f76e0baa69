//! Topic names: Kafka validity, the ONEX taxonomy, message categories and
//! the environment prefix.

use std::fmt;
use std::str::FromStr;

/// Longest topic name Kafka accepts.
pub const MAX_TOPIC_LEN: usize = 249;

/// Suffix of a dead-letter topic.
pub const DLQ_SUFFIX: &str = ".dlq";

/// Why a topic name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    /// Empty name.
    #[error("topic name is empty")]
    Empty,
    /// Longer than [`MAX_TOPIC_LEN`].
    #[error("topic name `{0}` is longer than 249 characters")]
    TooLong(String),
    /// `.` or `..`.
    #[error("topic name `{0}` is reserved")]
    Reserved(String),
    /// A character outside `[a-zA-Z0-9._-]`.
    #[error("topic name `{name}` contains `{ch}`; allowed are a-z A-Z 0-9 . _ -")]
    BadChar {
        /// The name.
        name: String,
        /// The first bad character.
        ch: char,
    },
    /// Valid for Kafka but not `onex.<kind>.<producer>.<event-name>.v<N>`.
    #[error(
        "topic `{0}` does not follow onex.<kind>.<producer>.<event-name>.v<N> \
         (kind: evt, cmd, intent, dlq, snapshot)"
    )]
    Taxonomy(String),
}

/// Checks the Kafka rules: 1–249 characters of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), TopicError> {
    if name.is_empty() {
        return Err(TopicError::Empty);
    }
    if name.len() > MAX_TOPIC_LEN {
        return Err(TopicError::TooLong(name.to_string()));
    }
    if name == "." || name == ".." {
        return Err(TopicError::Reserved(name.to_string()));
    }
    if let Some(ch) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(TopicError::BadChar {
            name: name.to_string(),
            ch,
        });
    }
    Ok(())
}

/// The `<kind>` segment of an ONEX topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicKind {
    /// `evt`: something happened.
    Event,
    /// `cmd`: do something.
    Command,
    /// `intent`: something is wanted.
    Intent,
    /// `dlq`: dead letters.
    DeadLetter,
    /// `snapshot`: compacted state.
    Snapshot,
}

impl TopicKind {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "evt" => TopicKind::Event,
            "cmd" => TopicKind::Command,
            "intent" => TopicKind::Intent,
            "dlq" => TopicKind::DeadLetter,
            "snapshot" => TopicKind::Snapshot,
            _ => return None,
        })
    }
}

/// A topic parsed as `onex.<kind>.<producer>.<event-name>.v<N>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnexTopic<'a> {
    /// Kind segment.
    pub kind: TopicKind,
    /// Producer segment.
    pub producer: &'a str,
    /// Event name segment.
    pub event_name: &'a str,
    /// Version number.
    pub version: u32,
}

/// Parses an ONEX taxonomy topic (without environment prefix).
pub fn parse_onex_topic(name: &str) -> Result<OnexTopic<'_>, TopicError> {
    let bad = || TopicError::Taxonomy(name.to_string());
    validate_topic_name(name)?;
    let parts: Vec<&str> = name.split('.').collect();
    let [root, kind, producer, event_name, version] = parts.as_slice() else {
        return Err(bad());
    };
    if *root != "onex" || producer.is_empty() || event_name.is_empty() {
        return Err(bad());
    }
    let kind = TopicKind::parse(kind).ok_or_else(bad)?;
    let version = version
        .strip_prefix('v')
        .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|d| d.parse().ok())
        .ok_or_else(bad)?;
    Ok(OnexTopic {
        kind,
        producer,
        event_name,
        version,
    })
}

/// Why answers to a request may not be published on `reply_to` (a
/// physical topic name taken from the request), if they may not. A request
/// comes from outside the node, so its reply topic must not make the node
/// write where answers do not belong: into commands (another node's work),
/// dead letters or snapshots (another node's failures and state), Kafka's
/// internal topics, or, for a node with a topic prefix, another
/// environment's topics.
pub fn reply_topic_refusal(reply_to: &str, namer: &TopicNamer) -> Option<String> {
    if let Err(e) = validate_topic_name(reply_to) {
        return Some(e.to_string());
    }
    if reply_to.starts_with("__") {
        return Some(format!("`{reply_to}` is a Kafka internal topic"));
    }
    let Some(logical) = reply_to.strip_prefix(namer.prefix()) else {
        return Some(format!(
            "`{reply_to}` is outside this node's environment (topic prefix `{}`)",
            namer.prefix()
        ));
    };
    let kind = logical
        .strip_prefix("onex.")
        .and_then(|rest| rest.split('.').next())
        .and_then(TopicKind::parse);
    let what = match kind {
        Some(TopicKind::Command) => "a command topic",
        Some(TopicKind::DeadLetter) => "a dead-letter topic",
        Some(TopicKind::Snapshot) => "a snapshot topic",
        _ if logical.ends_with(DLQ_SUFFIX) => "a dead-letter topic",
        _ => return None,
    };
    Some(format!(
        "`{reply_to}` is {what}; answers go to event topics"
    ))
}

/// How strictly topic names are checked against the ONEX taxonomy
/// (`ONEX_TOPIC_VALIDATION`). Kafka validity is always enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TopicValidation {
    /// A non-taxonomy name is an error.
    Reject,
    /// A non-taxonomy name is logged as a warning.
    #[default]
    Warn,
    /// Only Kafka validity is checked.
    Off,
}

impl FromStr for TopicValidation {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "reject" => Ok(TopicValidation::Reject),
            "warn" => Ok(TopicValidation::Warn),
            "off" => Ok(TopicValidation::Off),
            _ => Err("one of reject, warn, off".into()),
        }
    }
}

impl fmt::Display for TopicValidation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TopicValidation::Reject => "reject",
            TopicValidation::Warn => "warn",
            TopicValidation::Off => "off",
        })
    }
}

/// Checks `name` (unprefixed) per `mode`. Dead-letter topics
/// (`<topic>.dlq`) are checked by their base name.
pub fn check_topic(name: &str, mode: TopicValidation) -> Result<(), TopicError> {
    validate_topic_name(name)?;
    if mode == TopicValidation::Off {
        return Ok(());
    }
    let base = name.strip_suffix(DLQ_SUFFIX).unwrap_or(name);
    match parse_onex_topic(base) {
        Ok(_) => Ok(()),
        Err(e) if mode == TopicValidation::Reject => Err(e),
        Err(e) => {
            tracing::warn!(topic = name, "{e}");
            Ok(())
        }
    }
}

/// The category of a message, read from its topic name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageCategory {
    /// Events (`evt`, `events`).
    Event,
    /// Commands (`cmd`, `commands`).
    Command,
    /// Intents (`intent`, `intents`).
    Intent,
}

impl MessageCategory {
    /// Reads the category from any segment of a (possibly prefixed) topic:
    /// `evt`/`events`, `cmd`/`commands`, `intent`/`intents`. The first
    /// matching segment wins.
    pub fn from_topic(topic: &str) -> Option<Self> {
        topic.split('.').find_map(|seg| match seg {
            "evt" | "events" => Some(MessageCategory::Event),
            "cmd" | "commands" => Some(MessageCategory::Command),
            "intent" | "intents" => Some(MessageCategory::Intent),
            _ => None,
        })
    }
}

/// Applies the environment prefix (`KAFKA_TOPIC_PREFIX`) to topic names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicNamer {
    prefix: String,
}

impl TopicNamer {
    /// A namer with `prefix` (e.g. `dev.archon-intelligence.`), used verbatim.
    pub fn new(prefix: impl Into<String>) -> Self {
        TopicNamer {
            prefix: prefix.into(),
        }
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The physical topic for `logical`. Idempotent: an already-prefixed
    /// name is returned unchanged.
    pub fn physical(&self, logical: &str) -> String {
        if self.prefix.is_empty() || logical.starts_with(&self.prefix) {
            logical.to_string()
        } else {
            format!("{}{}", self.prefix, logical)
        }
    }

    /// The physical dead-letter topic for a consumed logical topic: the
    /// explicit one if given (prefixed), else `<prefix><topic>.dlq`.
    pub fn dlq(&self, consumed_logical: &str, explicit: Option<&str>) -> String {
        match explicit {
            Some(t) => self.physical(t),
            None => self.physical(&format!("{consumed_logical}{DLQ_SUFFIX}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_stay_out_of_commands_dead_letters_snapshots_and_internals() {
        let namer = TopicNamer::new("dev.");
        for ok in ["dev.onex.evt.node-x.replies.v1", "dev.archon.replies"] {
            assert_eq!(reply_topic_refusal(ok, &namer), None, "{ok}");
        }
        // Without a prefix there is one environment.
        let unprefixed = TopicNamer::default();
        assert_eq!(reply_topic_refusal("archon.replies", &unprefixed), None);
        let reason = reply_topic_refusal("onex.cmd.demo.charge.v1", &unprefixed);
        assert!(reason.is_some_and(|r| r.contains("a command topic")));
        for (refused, why) in [
            ("dev.onex.cmd.demo.charge.v1", "a command topic"),
            (
                "onex.evt.node-x.replies.v1",
                "outside this node's environment",
            ),
            ("prod.onex.evt.node-x.replies.v1", "topic prefix `dev.`"),
            ("dev.onex.dlq.demo.charge.v1", "a dead-letter topic"),
            ("dev.onex.evt.demo.charged.v1.dlq", "a dead-letter topic"),
            ("dev.onex.snapshot.demo.node-x.v1", "a snapshot topic"),
            ("__consumer_offsets", "Kafka internal"),
            ("bad topic", "allowed are"),
            ("", "empty"),
        ] {
            let reason = reply_topic_refusal(refused, &namer).unwrap_or_default();
            assert!(reason.contains(why), "{refused}: {reason}");
        }
    }

    #[test]
    fn kafka_rules() {
        assert_eq!(validate_topic_name(""), Err(TopicError::Empty));
        assert!(matches!(
            validate_topic_name("."),
            Err(TopicError::Reserved(_))
        ));
        assert!(matches!(
            validate_topic_name(".."),
            Err(TopicError::Reserved(_))
        ));
        assert!(validate_topic_name("...").is_ok());
        assert!(validate_topic_name(&"a".repeat(249)).is_ok());
        assert!(matches!(
            validate_topic_name(&"a".repeat(250)),
            Err(TopicError::TooLong(_))
        ));
        assert_eq!(
            validate_topic_name("a b"),
            Err(TopicError::BadChar {
                name: "a b".into(),
                ch: ' '
            })
        );
        assert!(validate_topic_name("ok_Topic-1.x").is_ok());
        assert!(validate_topic_name("tópico").is_err());
    }

    #[test]
    fn taxonomy() {
        let t = parse_onex_topic("onex.evt.git.commit-created.v2").unwrap();
        assert_eq!(t.kind, TopicKind::Event);
        assert_eq!(t.producer, "git");
        assert_eq!(t.event_name, "commit-created");
        assert_eq!(t.version, 2);
        for ok in [
            "onex.cmd.platform.request-introspection.v1",
            "onex.intent.a.b.v10",
            "onex.dlq.a.b.v1",
            "onex.snapshot.a.b.v1",
        ] {
            assert!(parse_onex_topic(ok).is_ok(), "{ok}");
        }
        for bad in [
            "onex.evt.git.v1",
            "onex.event.git.x.v1",
            "foo.evt.git.x.v1",
            "onex.evt.git.x.1",
            "onex.evt.git.x.v",
            "onex.evt.git.x.v1x",
            "onex.evt..x.v1",
            "onex.evt.git.x.v1.extra",
        ] {
            assert!(parse_onex_topic(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn validation_modes() {
        assert!(check_topic("legacy-topic", TopicValidation::Off).is_ok());
        assert!(check_topic("legacy-topic", TopicValidation::Warn).is_ok());
        assert!(matches!(
            check_topic("legacy-topic", TopicValidation::Reject),
            Err(TopicError::Taxonomy(_))
        ));
        assert!(check_topic("onex.evt.a.b.v1.dlq", TopicValidation::Reject).is_ok());
        // Kafka validity is enforced in every mode.
        assert!(check_topic("bad topic", TopicValidation::Off).is_err());
        assert_eq!(
            "REJECT".parse::<TopicValidation>(),
            Ok(TopicValidation::Reject)
        );
        assert!("maybe".parse::<TopicValidation>().is_err());
    }

    #[test]
    fn categories() {
        assert_eq!(
            MessageCategory::from_topic("onex.evt.a.b.v1"),
            Some(MessageCategory::Event)
        );
        assert_eq!(
            MessageCategory::from_topic("dev.onex.cmd.a.b.v1"),
            Some(MessageCategory::Command)
        );
        assert_eq!(
            MessageCategory::from_topic("dev.svc.intents"),
            Some(MessageCategory::Intent)
        );
        assert_eq!(MessageCategory::from_topic("plain"), None);
    }

    #[test]
    fn prefix_applies_to_topics_and_dlq() {
        let n = TopicNamer::new("dev.archon-intelligence.");
        assert_eq!(
            n.physical("onex.evt.a.b.v1"),
            "dev.archon-intelligence.onex.evt.a.b.v1"
        );
        assert_eq!(n.physical(&n.physical("t")), n.physical("t"));
        assert_eq!(
            n.dlq("onex.evt.a.b.v1", None),
            "dev.archon-intelligence.onex.evt.a.b.v1.dlq"
        );
        assert_eq!(
            n.dlq("x", Some("onex.dlq.a.b.v1")),
            "dev.archon-intelligence.onex.dlq.a.b.v1"
        );
        assert_eq!(TopicNamer::default().dlq("t", None), "t.dlq");
    }
}
