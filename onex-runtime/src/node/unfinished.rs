//! What handling an input came to, kept while the bus cannot take it.
//!
//! An input whose results (or dead letter) the bus cannot take for now is
//! left unacknowledged and delivered again once the pause after it is over.
//! Handling it again would run its handler again: for an effect, the call
//! to the outside system it stands for, once per redelivery for as long as
//! the outage lasts. So a node that keeps no state keeps what the handling
//! came to here, and the redelivered input publishes it without running the
//! handler. (A node that keeps state does not: its staged state was given
//! up, and it handles the input again from the state before it.)
//!
//! Bounded: [`CAPACITY`] inputs and [`BYTE_BUDGET`] bytes of records. The
//! oldest entry goes first; an input whose entry went is handled again, as
//! it would be without this store. An entry names the input's place and
//! event id, so it is only ever used for that same input: the same place
//! holding another event (a topic deleted and created again) misses.

use std::collections::VecDeque;
use std::sync::Mutex;

use uuid::Uuid;

use super::Outcome;
use crate::node::InboundEvent;

/// Inputs kept at the most: many more than one consumer has in flight by
/// default (one per partition), as many as a node with
/// `KAFKA_MAX_IN_FLIGHT` in the thousands may leave unpublished at once.
pub const CAPACITY: usize = 1024;

/// Bytes of records kept at the most.
pub const BYTE_BUDGET: usize = 64 << 20;

/// Where an input was read, and which event it was.
struct Place {
    topic: String,
    partition: i32,
    offset: i64,
    event_id: Uuid,
}

impl Place {
    /// The place of `event`.
    fn of(event: &InboundEvent) -> Self {
        Place {
            topic: event.topic.clone(),
            partition: event.partition,
            offset: event.offset,
            event_id: event.envelope.event_id,
        }
    }

    /// Whether this is the place of `event` (compared without copying its
    /// topic: every input of a node without state is looked up).
    fn is_of(&self, event: &InboundEvent) -> bool {
        self.offset == event.offset
            && self.partition == event.partition
            && self.event_id == event.envelope.event_id
            && self.topic == event.topic
    }
}

/// The outcomes of inputs left unacknowledged, oldest first.
#[derive(Default)]
pub struct Unfinished {
    kept: Mutex<Kept>,
}

#[derive(Default)]
struct Kept {
    entries: VecDeque<(Place, Outcome, usize)>,
    bytes: usize,
}

impl Unfinished {
    /// Keeps `outcome` for the input `event`, in place of what was kept for
    /// it before.
    pub fn keep(&self, event: &InboundEvent, outcome: Outcome) {
        let size = outcome.size();
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        kept.remove(event);
        if size > BYTE_BUDGET {
            return;
        }
        while kept.entries.len() >= CAPACITY || kept.bytes + size > BYTE_BUDGET {
            let Some((_, _, gone)) = kept.entries.pop_front() else {
                break;
            };
            kept.bytes -= gone;
        }
        kept.bytes += size;
        kept.entries.push_back((Place::of(event), outcome, size));
    }

    /// What was kept for the input `event`, taken out of the store.
    pub fn take(&self, event: &InboundEvent) -> Option<Outcome> {
        self.kept
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(event)
    }

    /// How many inputs are kept.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.kept.lock().unwrap().entries.len()
    }
}

impl Kept {
    fn remove(&mut self, event: &InboundEvent) -> Option<Outcome> {
        let at = self.entries.iter().position(|(p, _, _)| p.is_of(event))?;
        let (_, outcome, size) = self.entries.remove(at)?;
        self.bytes -= size;
        Some(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::OutgoingMessage;
    use crate::dlq::Failure;
    use crate::headers::Headers;

    /// The input at `offset` of topic `t`, with an event id of its own.
    fn input(offset: i64) -> InboundEvent {
        let mut event = crate::testing::inbound("t", "e", serde_json::json!({}));
        event.offset = offset;
        event.envelope.event_id = Uuid::from_u128(offset as u128);
        event
    }

    fn records(bytes: usize) -> Outcome {
        Outcome::Done(vec![OutgoingMessage {
            topic: "out".into(),
            key: None,
            value: vec![b'x'; bytes],
            headers: Headers::default(),
            raw_headers: None,
        }])
    }

    fn failed() -> Outcome {
        Outcome::Failed(Failure {
            error_type: "timeout".into(),
            reason: "r".into(),
            retry_count: 2,
            failed_at: chrono::Utc::now(),
            correlation_id: None,
        })
    }

    fn value_len(outcome: Option<Outcome>) -> Option<usize> {
        match outcome? {
            Outcome::Done(records) => Some(records[0].value.len()),
            Outcome::Failed(_) => Some(usize::MAX),
        }
    }

    #[test]
    fn an_outcome_is_taken_once_and_only_for_its_own_input() {
        let store = Unfinished::default();
        store.keep(&input(1), records(10));
        store.keep(&input(2), failed());
        let mut other_event = input(1);
        other_event.envelope.event_id = Uuid::from_u128(99);
        assert!(
            store.take(&other_event).is_none(),
            "another event at the place"
        );
        assert!(store.take(&input(3)).is_none());
        assert_eq!(value_len(store.take(&input(1))), Some(10));
        assert!(store.take(&input(1)).is_none(), "taken already");
        assert_eq!(value_len(store.take(&input(2))), Some(usize::MAX));
        assert_eq!(store.len(), 0);
    }

    #[test]
    fn keeping_again_replaces() {
        let store = Unfinished::default();
        store.keep(&input(1), records(10));
        store.keep(&input(1), records(4));
        assert_eq!(store.len(), 1);
        assert_eq!(value_len(store.take(&input(1))), Some(4));
        assert_eq!(store.kept.lock().unwrap().bytes, 0);
    }

    #[test]
    fn the_oldest_goes_first_past_the_count() {
        let store = Unfinished::default();
        for offset in 0..CAPACITY as i64 + 2 {
            store.keep(&input(offset), records(1));
        }
        assert_eq!(store.len(), CAPACITY);
        assert!(store.take(&input(0)).is_none());
        assert!(store.take(&input(1)).is_none());
        assert!(store.take(&input(2)).is_some());
        assert!(store.take(&input(CAPACITY as i64 + 1)).is_some());
    }

    #[test]
    fn the_oldest_goes_first_past_the_bytes() {
        let store = Unfinished::default();
        // A third of the budget with the topic name (`out`) counted.
        let third = BYTE_BUDGET / 3 - "out".len();
        for offset in 0..4 {
            store.keep(&input(offset), records(third));
        }
        assert_eq!(store.len(), 3);
        assert!(store.take(&input(0)).is_none());
        assert!(store.kept.lock().unwrap().bytes <= BYTE_BUDGET);
        // Larger than the whole budget: not kept, and nothing else evicted.
        store.keep(&input(9), records(BYTE_BUDGET + 1));
        assert!(store.take(&input(9)).is_none());
        assert_eq!(store.len(), 3);
    }
}
