//! The consumer loop with several messages in flight: `KAFKA_MAX_IN_FLIGHT`
//! above 1, for a handler whose keys are independent
//! ([`MessageHandler::keys_independent`]).
//!
//! One message at a time costs a partition a broker round trip per message
//! (the handler's publish is acknowledged before the next message is taken).
//! Here up to `max_in_flight` messages are taken at once: a message starts
//! at once unless a message of its key (same partition, same record key;
//! keyless records share one lane) is still being handled, in which case it
//! waits behind it. A partition's offset is stored (and committed) only up
//! to its first message not yet acknowledged, so a crash or stop redelivers
//! everything from there: at-least-once, as with one at a time. A
//! rebalance is reported to the handler only once every message taken
//! before it is finished.
//!
//! [`MessageHandler::keys_independent`]: crate::bus::MessageHandler::keys_independent

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap, VecDeque};

use tokio::sync::watch;
use tokio::task::JoinSet;

use super::{
    report_rebalance, report_rebalances, to_bus_message, ErrorLog, Rebalanced, Subscriber,
};
use crate::bus::{deliver_until_acked, BusMessage};

/// A partition of the consumed topic.
type PartitionId = (String, i32);
/// The messages that must be handled in order: one record key of one
/// partition.
type Lane = (String, i32, Option<Vec<u8>>);

fn lane(msg: &BusMessage) -> Lane {
    (msg.topic.clone(), msg.partition, msg.key.clone())
}

/// The messages taken and not yet committed, and the order they must be
/// handled in.
#[derive(Default)]
struct Window {
    /// Per partition, every message taken and not yet committable, by
    /// offset: whether it was acknowledged.
    offsets: HashMap<PartitionId, BTreeMap<i64, bool>>,
    /// Lanes with a message being handled, and the messages waiting behind
    /// it in offset order.
    lanes: HashMap<Lane, VecDeque<BusMessage>>,
    /// Messages taken and not finished (being handled or waiting).
    held: usize,
}

impl Window {
    /// Takes `msg`; gives it back if it can be handled now (nothing of its
    /// lane is being handled), else keeps it waiting.
    fn admit(&mut self, msg: BusMessage) -> Option<BusMessage> {
        self.offsets
            .entry((msg.topic.clone(), msg.partition))
            .or_default()
            .insert(msg.offset, false);
        self.held += 1;
        match self.lanes.entry(lane(&msg)) {
            Entry::Occupied(mut waiting) => {
                waiting.get_mut().push_back(msg);
                None
            }
            Entry::Vacant(free) => {
                free.insert(VecDeque::new());
                Some(msg)
            }
        }
    }

    /// `msg` was handled and acknowledged. Returns the next message of its
    /// lane to handle, and the partition's offset that became committable
    /// (the last of the acknowledged messages before the first one that is
    /// not), if it moved.
    fn acked(&mut self, msg: &BusMessage) -> (Option<BusMessage>, Option<i64>) {
        self.held -= 1;
        let mut committable = None;
        if let Some(offsets) = self.offsets.get_mut(&(msg.topic.clone(), msg.partition)) {
            if let Some(done) = offsets.get_mut(&msg.offset) {
                *done = true;
            }
            while let Some(entry) = offsets.first_entry() {
                if !*entry.get() {
                    break;
                }
                committable = Some(entry.remove_entry().0);
            }
        }
        let next = match self.lanes.entry(lane(msg)) {
            Entry::Occupied(mut waiting) => {
                let next = waiting.get_mut().pop_front();
                if next.is_none() {
                    waiting.remove();
                }
                next
            }
            Entry::Vacant(_) => None,
        };
        (next, committable)
    }
}

/// Consumes with up to `settings.max_in_flight` messages in flight until
/// `stop` is set, then lets the messages being handled finish, commits and
/// leaves the group.
pub(super) async fn consume(
    sub: Subscriber,
    mut rebalances: tokio::sync::mpsc::UnboundedReceiver<Rebalanced>,
    mut stop: watch::Receiver<bool>,
) {
    let handler = sub.handler.as_ref();
    let mut loop_ = InFlight {
        sub: &sub,
        stop: stop.clone(),
        window: Window::default(),
        running: JoinSet::new(),
        stopped: false,
    };
    let mut errors = ErrorLog::default();
    while !loop_.stopped {
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            Some(done) = loop_.running.join_next(), if !loop_.running.is_empty() => {
                loop_.finished(done);
            }
            Some(change) = rebalances.recv() => {
                loop_.drain().await;
                report_rebalance(handler, change).await;
            }
            received = sub.consumer.recv(), if loop_.window.held < sub.settings.max_in_flight => {
                let pause = sub.settings.consumer_sleep_interval;
                let Some(m) = errors.message(received, pause).await else {
                    continue;
                };
                let msg = to_bus_message(&m);
                drop(m);
                if !rebalances.is_empty() {
                    // Partitions changed before this message:
                    // finish what came before, then tell the handler.
                    loop_.drain().await;
                    report_rebalances(handler, &mut rebalances).await;
                }
                if let Some(now) = loop_.window.admit(msg) {
                    loop_.start(now);
                }
            }
        }
    }
    // Stopping: the messages being handled finish (one that is not
    // acknowledged gives up, its offset and all after it unstored); the
    // ones waiting behind them are left for the group's next member.
    loop_.stopped = true;
    while let Some(done) = loop_.running.join_next().await {
        loop_.finished(done);
    }
    drop(loop_);
    sub.finish(&mut rebalances).await;
}

struct InFlight<'a> {
    sub: &'a Subscriber,
    stop: watch::Receiver<bool>,
    window: Window,
    running: JoinSet<(BusMessage, bool)>,
    /// A message was left unacknowledged, or stopping: start nothing more.
    stopped: bool,
}

impl InFlight<'_> {
    fn start(&mut self, msg: BusMessage) {
        let handler = self.sub.handler.clone();
        let metrics = self.sub.metrics.clone();
        let mut stop = self.stop.clone();
        let pause = self.sub.settings.consumer_sleep_interval;
        self.running.spawn(async move {
            let acked =
                deliver_until_acked(handler.as_ref(), &msg, &mut stop, pause, &metrics).await;
            (msg, acked)
        });
    }

    fn finished(&mut self, done: Result<(BusMessage, bool), tokio::task::JoinError>) {
        let (msg, acked) = match done {
            Ok(done) => done,
            Err(e) => {
                // The handler panicked: nothing after this message can be
                // committed, so stop as the one-at-a-time loop would.
                tracing::error!("message handler failed: {e}");
                self.stopped = true;
                return;
            }
        };
        if !acked {
            // Stopping with the message unacknowledged: its offset stays
            // unstored so the group gets it (and everything after it) again.
            self.stopped = true;
            return;
        }
        let (next, committable) = self.window.acked(&msg);
        if let Some(offset) = committable {
            self.sub.store(&msg.topic, msg.partition, offset);
        }
        if let Some(next) = next.filter(|_| !self.stopped) {
            self.start(next);
        }
    }

    /// Handles every message taken so far, the waiting ones included.
    async fn drain(&mut self) {
        while let Some(done) = self.running.join_next().await {
            self.finished(done);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::headers::Headers;

    fn msg(partition: i32, offset: i64, key: &str) -> BusMessage {
        BusMessage {
            topic: "t".into(),
            partition,
            offset,
            key: Some(key.as_bytes().to_vec()),
            value: Vec::new(),
            headers: Headers::default(),
            raw_headers: Default::default(),
        }
    }

    #[test]
    fn a_key_waits_for_its_previous_message_and_other_keys_do_not() {
        let mut w = Window::default();
        assert!(w.admit(msg(0, 0, "a")).is_some());
        assert!(w.admit(msg(0, 1, "b")).is_some());
        assert!(w.admit(msg(0, 2, "a")).is_none());
        assert!(w.admit(msg(1, 0, "a")).is_some(), "another partition");
        assert_eq!(w.held, 4);
        let (next, _) = w.acked(&msg(0, 0, "a"));
        assert_eq!(next.map(|m| m.offset), Some(2));
    }

    #[test]
    fn the_committable_offset_stops_at_the_first_unacknowledged_message() {
        let mut w = Window::default();
        for (o, k) in [(0, "a"), (1, "b"), (2, "c"), (3, "d")] {
            w.admit(msg(0, o, k));
        }
        assert_eq!(w.acked(&msg(0, 1, "b")).1, None);
        assert_eq!(w.acked(&msg(0, 3, "d")).1, None);
        assert_eq!(w.acked(&msg(0, 0, "a")).1, Some(1));
        assert_eq!(w.acked(&msg(0, 2, "c")).1, Some(3));
        assert_eq!(w.held, 0);
        assert!(w.lanes.is_empty());
    }
}
