//! Every topic layout real contracts use, folded into one [`Topics`].
//!
//! Subscribed: `event_bus.subscribe_topics`, `event_bus.subscribe.topic`,
//! `event_bus.subscribe_topic_metadata`, `consumed_events`, `event_sources`,
//! `subscriptions`,
//! `input_subscriptions`, `topics.consumes|subscribes`.
//! Published: `event_bus.publish_topics`, `event_bus.publish.success_topic` /
//! `failure_topic`, `event_bus.publish_topic_metadata`, `event_bus.topic_base`,
//! `published_events`, `event_outputs`, `output_models[].topic`,
//! `publications`, `terminal_event`,
//! `topics.produces|publishes`, operation output topics.
//! Topics are deduplicated in contract order; a later, more specific mention
//! (a success/failure/terminal role, an event_type, a description) enriches
//! the first one.

use crate::contract::{
    Operation, PublishBinding, PublishRole, TopicBinding, TopicName, TopicSource, Topics,
};

use super::ops::topic_name;
use super::{Ctx, Cursor};

#[derive(Default)]
struct Collector {
    topics: Topics,
    warned: Vec<String>,
}

/// The keys a topic entry names its topic under.
const TOPIC: &[&str] = &["topic", "name"];

/// Which list of [`Topics`] a mention joins.
#[derive(Clone, Copy)]
enum Side {
    Subscribe,
    Publish(PublishRole),
}

struct Mention<'a> {
    at: Cursor<'a>,
    text: String,
    event_type: Option<String>,
    description: Option<String>,
    source: TopicSource,
}

impl Collector {
    fn name(&mut self, ctx: &mut Ctx, m: &Mention) -> Option<TopicName> {
        let mut text = m.text.trim();
        // `{env}.{namespace}.onex.evt.x.v1`: the placeholders are deployment
        // prefixes; the topic onex-gen can honour is what follows them.
        let mut stripped = false;
        while let Some(rest) = text
            .strip_prefix('{')
            .and_then(|r| r.split_once("}."))
            .map(|(_, rest)| rest)
        {
            text = rest;
            stripped = true;
        }
        if stripped && !text.contains(['*', '{', '$']) {
            ctx.warning(
                "W-TOPIC-PATTERN",
                &m.at,
                format!(
                    "the placeholder prefix of {:?} is not applied; the node uses {text:?}",
                    m.text.trim()
                ),
                "a concrete topic name",
            );
            let m2 = Mention {
                at: m.at.clone(),
                text: text.to_owned(),
                event_type: None,
                description: None,
                source: m.source,
            };
            return self.checked(ctx, &m2);
        }
        if text.contains('*') || text.contains('{') || text.contains('$') {
            // A pattern is skipped, but only one made of topic characters and
            // pattern syntax: anything else is refused like a bad topic name.
            if let Some(bad) = text.chars().find(|c| {
                !(c.is_ascii_alphanumeric()
                    || matches!(c, '.' | '_' | '-' | '*' | '{' | '}' | '$' | ':'))
            }) {
                ctx.error(
                    "E-TOPIC-NAME",
                    &m.at,
                    format!("topic pattern {text:?} contains {bad:?}"),
                    "a Kafka topic name (a-z, A-Z, 0-9, '.', '_' or '-'), or a pattern of those with '*' or {placeholder}",
                );
                return None;
            }
            ctx.warning(
                "W-UNSUPPORTED",
                &m.at,
                format!("topic pattern {text:?} cannot be subscribed to or published by name; it is ignored"),
                "a concrete topic name, e.g. onex.evt.omniclaude.git-result.v1",
            );
            return None;
        }
        self.checked(ctx, m)
    }

    fn checked(&mut self, ctx: &mut Ctx, m: &Mention) -> Option<TopicName> {
        let t = match TopicName::parse(m.text.trim()) {
            Ok(t) => t,
            Err(_) => topic_name(ctx, &m.at)?,
        };
        if t.onex_taxonomy().is_none() && !self.warned.contains(&t.as_str().to_owned()) {
            self.warned.push(t.as_str().to_owned());
            ctx.warning(
                "W-TOPIC-TAXONOMY",
                &m.at,
                format!(
                    "topic {:?} does not follow the ONEX topic taxonomy",
                    t.as_str()
                ),
                "onex.<evt|cmd|intent|dlq|snapshot>.<producer>.<event-name>.v<N>",
            );
        }
        Some(t)
    }

    fn subscribe(&mut self, ctx: &mut Ctx, m: Mention) {
        let Some(topic) = self.name(ctx, &m) else {
            return;
        };
        if let Some(b) = self.topics.subscribe.iter_mut().find(|b| b.topic == topic) {
            b.event_type = b.event_type.take().or(m.event_type);
            b.description = b.description.take().or(m.description);
            return;
        }
        self.topics.subscribe.push(TopicBinding {
            topic,
            event_type: m.event_type,
            description: m.description,
            source: m.source,
            origin: m.at.origin(),
        });
    }

    fn add(&mut self, ctx: &mut Ctx, m: Mention, side: Side) {
        match side {
            Side::Subscribe => self.subscribe(ctx, m),
            Side::Publish(role) => self.publish(ctx, m, role),
        }
    }

    /// The topic each item names (see [`mention`]), added to `side`.
    fn add_items<'a>(
        &mut self,
        ctx: &mut Ctx,
        items: impl IntoIterator<Item = Cursor<'a>>,
        keys: &[&str],
        source: TopicSource,
        side: Side,
    ) {
        for item in items {
            if let Some(m) = mention(ctx, &item, keys, source) {
                self.add(ctx, m, side);
            }
        }
    }

    /// `{<topic>: {description}}` entries (`*_topic_metadata`), added to `side`.
    fn add_metadata(&mut self, ctx: &mut Ctx, meta: Option<Cursor>, side: Side) {
        for (key, value) in meta.map(|m| m.entries()).unwrap_or_default() {
            if let Some(text) = key.node.key_text() {
                let m = Mention {
                    at: key,
                    text,
                    event_type: None,
                    description: value.get("description").and_then(|d| d.scalar()),
                    source: TopicSource::EventBusMap,
                };
                self.add(ctx, m, side);
            }
        }
    }

    /// The `topics.<key>` lists for both `keys`, added to `side`.
    fn add_topics_lists(&mut self, ctx: &mut Ctx, root: &Cursor, keys: [&str; 2], side: Side) {
        let Some(t) = root.get("topics") else {
            return;
        };
        for key in keys {
            if let Some(list) = t.get(key) {
                self.add_items(ctx, list_items(&list), TOPIC, TopicSource::Topics, side);
            }
        }
    }

    fn publish(&mut self, ctx: &mut Ctx, m: Mention, role: PublishRole) {
        let Some(topic) = self.name(ctx, &m) else {
            return;
        };
        if let Some(p) = self
            .topics
            .publish
            .iter_mut()
            .find(|p| p.binding.topic == topic)
        {
            p.binding.event_type = p.binding.event_type.take().or(m.event_type);
            p.binding.description = p.binding.description.take().or(m.description);
            if p.role == PublishRole::Event {
                p.role = role;
            }
            return;
        }
        self.topics.publish.push(PublishBinding {
            binding: TopicBinding {
                topic,
                event_type: m.event_type,
                description: m.description,
                source: m.source,
                origin: m.at.origin(),
            },
            role,
        });
    }
}

/// One list item: a topic string, or a mapping naming the topic under one of
/// `keys` (`topic` first; a `{name, description}` entry names its topic under
/// `name`, which is said with a `W-TOPIC-ENTRY` warning).
fn mention<'a>(
    ctx: &mut Ctx,
    item: &Cursor<'a>,
    keys: &[&str],
    source: TopicSource,
) -> Option<Mention<'a>> {
    if let Some(text) = item.scalar() {
        return Some(Mention {
            at: item.clone(),
            text,
            event_type: None,
            description: None,
            source,
        });
    }
    let at = item.get_any(keys)?;
    if at.ptr.ends_with("/name") {
        ctx.warning(
            "W-TOPIC-ENTRY",
            &at,
            "the topic of this entry is given as name; it is read as the topic",
            "{topic: onex.evt.x.y.v1, description: ...}",
        );
    }
    Some(Mention {
        text: at.scalar()?,
        at,
        event_type: item.get("event_type").and_then(|c| c.scalar()),
        description: item.get("description").and_then(|c| c.scalar()),
        source,
    })
}

fn list_items<'a>(c: &Cursor<'a>) -> Vec<Cursor<'a>> {
    if c.is_seq() {
        c.items()
    } else if c.scalar().is_some() {
        vec![c.clone()]
    } else {
        Vec::new()
    }
}

pub fn topics(ctx: &mut Ctx, root: &Cursor, operations: &[Operation]) -> Topics {
    use TopicSource as S;
    const EVENT: Side = Side::Publish(PublishRole::Event);
    let mut col = Collector::default();
    if let Some(bus) = root.get("event_bus") {
        if let Some(list) = bus.get("subscribe_topics") {
            let items = list_items(&list);
            col.add_items(ctx, items, TOPIC, S::EventBusList, Side::Subscribe);
        }
        if let Some(sub) = bus.get("subscribe") {
            // `{topic, consumer_group}`, or omnibase_core's nested shape: a
            // list of `{topic, description}` maps.
            let entries = if sub.is_seq() { sub.items() } else { vec![sub] };
            for entry in entries {
                if let Some(m) = mention(ctx, &entry, TOPIC, S::EventBusMap) {
                    col.subscribe(ctx, m);
                }
                if let Some(g) = entry.get("consumer_group").and_then(|g| g.scalar()) {
                    col.topics.consumer_group.get_or_insert(g);
                }
            }
        }
        let meta = bus.get("subscribe_topic_metadata");
        col.add_metadata(ctx, meta, Side::Subscribe);
        if let Some(list) = bus.get("publish_topics") {
            col.add_items(ctx, list_items(&list), TOPIC, S::EventBusList, EVENT);
        }
        if let Some(publish) = bus.get("publish") {
            for (key, role) in [
                ("success_topic", PublishRole::Success),
                ("failure_topic", PublishRole::Failure),
            ] {
                let at = publish.get(key);
                col.add_items(ctx, at, TOPIC, S::EventBusMap, Side::Publish(role));
            }
            let single = publish.is_map()
                && publish.get("success_topic").is_none()
                && publish.get("failure_topic").is_none();
            // A mapping without those roles is one topic entry.
            let items = if single {
                vec![publish.clone()]
            } else {
                list_items(&publish)
            };
            col.add_items(ctx, items, TOPIC, S::EventBusMap, EVENT);
        }
        col.add_metadata(ctx, bus.get("publish_topic_metadata"), EVENT);
        let base = bus.get("topic_base");
        col.add_items(ctx, base, TOPIC, S::EventBusMap, EVENT);
        if let Some(pk) = bus.get("partition_key_field") {
            ctx.warning(
                "W-UNSUPPORTED",
                &pk,
                "partition_key_field is not honoured: messages are keyed by the envelope's correlation id",
                "no partition_key_field",
            );
        }
        if let Some(dlq) = bus.get("dlq_topics") {
            for item in list_items(&dlq) {
                let text = item
                    .scalar()
                    .or_else(|| item.get("topic").and_then(|t| t.scalar()));
                if let Some(text) = text {
                    let at = item.get("topic").unwrap_or(item.clone());
                    let m = Mention {
                        at,
                        text,
                        event_type: None,
                        description: None,
                        source: S::EventBusList,
                    };
                    if let Some(t) = col.name(ctx, &m) {
                        if !col.topics.dlq.contains(&t) {
                            col.topics.dlq.push(t);
                        }
                    }
                }
            }
        }
        if let Some(g) = bus.get("consumer_group").and_then(|g| g.scalar()) {
            col.topics.consumer_group.get_or_insert(g);
        }
        if let Some(r) = bus.get("auto_offset_reset") {
            match r.scalar().as_deref() {
                Some(v @ ("earliest" | "latest")) => {
                    col.topics.auto_offset_reset = Some(v.to_owned());
                }
                other => ctx.error(
                    "E-OFFSET-RESET",
                    &r,
                    format!(
                        "auto_offset_reset {:?} is not supported",
                        other.unwrap_or("")
                    ),
                    "earliest or latest",
                ),
            }
        }
    }

    const EVENT_TOPIC: &[&str] = &[
        "topic",
        "full_topic_pattern",
        "topic_suffix",
        "event_pattern",
    ];
    if let Some(list) = root.get("consumed_events") {
        let items = list.items();
        col.add_items(ctx, items, EVENT_TOPIC, S::ConsumedEvents, Side::Subscribe);
    }
    if let Some(list) = root.get("event_sources") {
        for item in list_items(&list) {
            if let Some(m) = mention(ctx, &item, TOPIC, S::ConsumedEvents) {
                col.subscribe(ctx, m);
            }
            if let Some(g) = item.get("consumer_group").and_then(|g| g.scalar()) {
                col.topics.consumer_group.get_or_insert(g);
            }
        }
    }
    if let Some(subs) = root.get("subscriptions") {
        let list = subs.get("topics").unwrap_or(subs);
        let items = list_items(&list);
        col.add_items(ctx, items, TOPIC, S::Subscriptions, Side::Subscribe);
    }
    if let Some(list) = root.get("input_subscriptions") {
        let items = list_items(&list);
        col.add_items(ctx, items, TOPIC, S::InputSubscriptions, Side::Subscribe);
    }
    col.add_topics_lists(ctx, root, ["consumes", "subscribes"], Side::Subscribe);

    if let Some(list) = root.get("published_events") {
        let items = list.items();
        col.add_items(ctx, items, EVENT_TOPIC, S::PublishedEvents, EVENT);
    }
    if let Some(list) = root.get("event_outputs") {
        let items = list_items(&list);
        col.add_items(ctx, items, TOPIC, S::PublishedEvents, EVENT);
    }
    if let Some(list) = root.get("output_models") {
        for item in list.items() {
            if let Some(mut m) = mention(ctx, &item, &["topic"], S::PublishedEvents) {
                if m.event_type.is_none() {
                    m.event_type = item.get("name").and_then(|n| n.scalar());
                }
                col.publish(ctx, m, PublishRole::Event);
            }
        }
    }
    if let Some(list) = root.get("publications") {
        let list = list.get("topics").unwrap_or(list);
        col.add_items(ctx, list_items(&list), TOPIC, S::Publications, EVENT);
    }
    col.add_topics_lists(ctx, root, ["produces", "publishes"], EVENT);
    for op in operations {
        if let Some(topic) = &op.output_topic {
            if !col.topics.publish.iter().any(|p| &p.binding.topic == topic) {
                col.topics.publish.push(PublishBinding {
                    binding: TopicBinding {
                        topic: topic.clone(),
                        event_type: op.event_type.clone(),
                        description: None,
                        source: S::IoOperation,
                        origin: op.origin.clone(),
                    },
                    role: PublishRole::Event,
                });
            }
        }
    }
    if let Some(t) = root.get("terminal_event") {
        let terminal = Side::Publish(PublishRole::Terminal);
        col.add_items(ctx, list_items(&t), TOPIC, S::TerminalEvent, terminal);
    }
    col.topics
}
