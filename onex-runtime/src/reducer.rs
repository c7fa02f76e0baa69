//! The reducer drivers: one state per aggregate, kept on the bus
//! ([`crate::state`]), moved by each consumed event.
//!
//! A generated crate provides the contract's tables and the user's hooks:
//! [`FsmReducer`] drives a state machine ([`FsmTable`]), [`JsonReducer`] a
//! JSON state that the user's [`Reduce`] computes.

use std::fmt;
use std::marker::PhantomData;

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::aggregate::aggregate_key;
use crate::node::{HandlerContext, HandlerError, InboundEvent, NodeHandler, OutboundEvent};
use crate::state::{StateKeeper, StateStore};

/// What a reducer publishes, and where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReducerEvents {
    /// Event type of a state change.
    pub state_changed: &'static str,
    /// Event type published when an aggregate reaches a terminal state.
    pub completed: &'static str,
    /// Where state changes go.
    pub result_topic: Option<&'static str>,
    /// Where terminal states are announced (the contract's `terminal_event`).
    pub terminal_topic: Option<&'static str>,
}

/// A contract's state machine, with the user's hooks `H` answering what the
/// contract leaves open (triggers, guards).
pub trait FsmTable<H>: Send + Sync + 'static {
    /// The states.
    type State: Copy + Eq + fmt::Display + Serialize + DeserializeOwned + Send + Sync + 'static;
    /// The triggers.
    type Trigger: Copy + fmt::Display + Serialize + Send + Sync + 'static;
    /// The machine's name in the contract.
    const MACHINE: &'static str;
    /// The state every aggregate starts in.
    const INITIAL: Self::State;
    /// What is published.
    const EVENTS: ReducerEvents;

    /// Whether no transition leaves `state`.
    fn is_terminal(state: Self::State) -> bool;

    /// The trigger `event` fires, or `None` to reject it.
    fn trigger_for(hooks: &H, event: &InboundEvent) -> Option<Self::Trigger>;

    /// The state `trigger` moves `from` to, or why the machine refuses.
    fn next(
        hooks: &H,
        from: Self::State,
        trigger: Self::Trigger,
        event: &InboundEvent,
    ) -> Result<Self::State, String>;
}

/// A reducer moving one `T` state machine per aggregate.
pub struct FsmReducer<T: FsmTable<H>, H> {
    hooks: H,
    store: StateStore<T::State>,
    table: PhantomData<fn() -> T>,
}

impl<T: FsmTable<H>, H: Send + Sync + 'static> FsmReducer<T, H> {
    /// A reducer answering through `hooks`.
    pub fn new(hooks: H) -> Self {
        FsmReducer {
            hooks,
            store: StateStore::new(),
            table: PhantomData,
        }
    }

    /// The latest state of an aggregate.
    pub fn state_of(&self, aggregate: &str) -> T::State {
        self.store.latest(aggregate).unwrap_or(T::INITIAL)
    }
}

#[async_trait]
impl<T: FsmTable<H>, H: Send + Sync + 'static> NodeHandler for FsmReducer<T, H> {
    async fn handle(
        &self,
        _ctx: &HandlerContext,
        event: &InboundEvent,
    ) -> Result<Vec<OutboundEvent>, HandlerError> {
        let trigger = T::trigger_for(&self.hooks, event).ok_or_else(|| {
            HandlerError::InvalidInput(format!(
                "event type {:?} fires no trigger of the {} state machine",
                event.envelope.event_type,
                T::MACHINE
            ))
        })?;
        let aggregate = aggregate_key(event);
        let from = self
            .store
            .get(event.partition, &aggregate)
            .unwrap_or(T::INITIAL);
        let to = T::next(&self.hooks, from, trigger, event).map_err(HandlerError::InvalidInput)?;
        self.store.stage(event.partition, &aggregate, to);
        tracing::info!(%aggregate, %from, %to, %trigger, "state changed");

        let terminal = T::is_terminal(to);
        let change = serde_json::json!({
            "aggregate_id": aggregate,
            "from_state": from,
            "to_state": to,
            "trigger": trigger,
            "terminal": terminal,
        });
        let events = T::EVENTS;
        let mut out = Vec::new();
        if let Some(topic) = events.result_topic {
            out.push(
                OutboundEvent::new(topic, events.state_changed, change.clone())
                    .with_partition_key(&aggregate),
            );
        }
        if let Some(topic) = events
            .terminal_topic
            .filter(|t| terminal && Some(*t) != events.result_topic)
        {
            out.push(
                OutboundEvent::new(topic, events.completed, change).with_partition_key(aggregate),
            );
        }
        Ok(out)
    }

    fn state_keeper(&self) -> Option<&dyn StateKeeper> {
        Some(&self.store)
    }
}

/// The next JSON state of an aggregate. Implement it in `src/handlers.rs`.
pub trait Reduce: Send + Sync + 'static {
    /// The aggregate's next state. `state` is `null` for a new aggregate.
    fn reduce(
        &self,
        state: &serde_json::Value,
        event: &InboundEvent,
    ) -> Result<serde_json::Value, HandlerError>;
}

/// What a JSON reducer publishes.
pub trait ReducerTable: Send + Sync + 'static {
    /// Event type and topics.
    const EVENTS: ReducerEvents;
}

/// A reducer keeping one JSON state per aggregate, computed by `H`.
pub struct JsonReducer<T, H> {
    reducer: H,
    store: StateStore<serde_json::Value>,
    table: PhantomData<fn() -> T>,
}

impl<T: ReducerTable, H: Reduce> JsonReducer<T, H> {
    /// A reducer computing states with `reducer`.
    pub fn new(reducer: H) -> Self {
        JsonReducer {
            reducer,
            store: StateStore::new(),
            table: PhantomData,
        }
    }

    /// The latest state of an aggregate (`null` when it has none yet).
    pub fn state_of(&self, aggregate: &str) -> serde_json::Value {
        self.store
            .latest(aggregate)
            .unwrap_or(serde_json::Value::Null)
    }
}

#[async_trait]
impl<T: ReducerTable, H: Reduce> NodeHandler for JsonReducer<T, H> {
    async fn handle(
        &self,
        _ctx: &HandlerContext,
        event: &InboundEvent,
    ) -> Result<Vec<OutboundEvent>, HandlerError> {
        let aggregate = aggregate_key(event);
        let current = self
            .store
            .get(event.partition, &aggregate)
            .unwrap_or(serde_json::Value::Null);
        let state = self.reducer.reduce(&current, event)?;
        self.store.stage(event.partition, &aggregate, state.clone());
        let change = serde_json::json!({ "aggregate_id": aggregate, "state": state });
        let events = T::EVENTS;
        Ok(events
            .result_topic
            .map(|topic| {
                OutboundEvent::new(topic, events.state_changed, change)
                    .with_partition_key(&aggregate)
            })
            .into_iter()
            .collect())
    }

    fn state_keeper(&self) -> Option<&dyn StateKeeper> {
        Some(&self.store)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::memory::InMemoryBus;
    use crate::bus::EventBus;
    use crate::state::StateContext;
    use serde_json::json;
    use std::sync::Arc;

    /// A light: off -on-> on -off-> off, `break` from anywhere to broken (terminal).
    struct Light;

    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
    #[serde(rename_all = "lowercase")]
    enum Lamp {
        Off,
        On,
        Broken,
    }

    impl fmt::Display for Lamp {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "{self:?}")
        }
    }

    impl FsmTable<()> for Light {
        type State = Lamp;
        type Trigger = &'static str;
        const MACHINE: &'static str = "light";
        const INITIAL: Lamp = Lamp::Off;
        const EVENTS: ReducerEvents = ReducerEvents {
            state_changed: "light.state-changed",
            completed: "light.completed",
            result_topic: Some("changes"),
            terminal_topic: Some("closed"),
        };

        fn is_terminal(state: Lamp) -> bool {
            state == Lamp::Broken
        }

        fn trigger_for(_: &(), event: &InboundEvent) -> Option<&'static str> {
            ["on", "off", "break"]
                .into_iter()
                .find(|t| *t == event.envelope.event_type)
        }

        fn next(
            _: &(),
            from: Lamp,
            trigger: &'static str,
            _: &InboundEvent,
        ) -> Result<Lamp, String> {
            match (from, trigger) {
                (Lamp::Off, "on") => Ok(Lamp::On),
                (Lamp::On, "off") => Ok(Lamp::Off),
                (f, "break") if f != Lamp::Broken => Ok(Lamp::Broken),
                _ => Err(format!("no transition from {from} on {trigger}")),
            }
        }
    }

    fn event(trigger: &str, aggregate: &str, offset: i64) -> InboundEvent {
        let mut e = crate::testing::inbound("in", trigger, json!({ "aggregate_id": aggregate }));
        e.offset = offset;
        e
    }

    #[tokio::test]
    async fn the_state_moves_only_when_committed() {
        let bus: Arc<dyn EventBus> = Arc::new(InMemoryBus::default());
        let ctx = StateContext {
            bus,
            topic: "onex.snapshot.demo.light.v1".into(),
        };
        let node: FsmReducer<Light, ()> = FsmReducer::new(());
        let keeper = node.state_keeper().expect("keeps state");
        let on = event("on", "l1", 0);
        assert!(keeper.admit(&ctx, &on).await.unwrap());
        let out = node.handle(&crate::testing::context(), &on).await.unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].payload["to_state"], "on");
        // Publishing failed: the same input is handled again from "off".
        keeper.abandon(&on);
        assert!(keeper.admit(&ctx, &on).await.unwrap());
        let again = node.handle(&crate::testing::context(), &on).await.unwrap();
        assert_eq!(again, out);
        keeper.commit(&on).await.unwrap();
        assert_eq!(node.state_of("l1"), Lamp::On);

        let broken = event("break", "l1", 1);
        assert!(keeper.admit(&ctx, &broken).await.unwrap());
        let out = node
            .handle(&crate::testing::context(), &broken)
            .await
            .unwrap();
        keeper.commit(&broken).await.unwrap();
        let types: Vec<&str> = out.iter().map(|e| e.event_type.as_str()).collect();
        assert_eq!(types, ["light.state-changed", "light.completed"]);
        assert_eq!(out[1].topic, "closed");

        // A new process restores "broken" and refuses to turn it on.
        let fresh: FsmReducer<Light, ()> = FsmReducer::new(());
        let on = event("on", "l1", 2);
        assert!(fresh
            .state_keeper()
            .unwrap()
            .admit(&ctx, &on)
            .await
            .unwrap());
        let refused = fresh.handle(&crate::testing::context(), &on).await;
        assert!(matches!(refused, Err(HandlerError::InvalidInput(m)) if m.contains("Broken")));
        fresh.state_keeper().unwrap().abandon(&on);
    }
}
