//! The reducer drivers: one state per aggregate, kept on the bus
//! ([`crate::state`]), moved by each consumed event.
//!
//! A generated crate provides the contract's tables and the user's hooks:
//! [`FsmReducer`] drives a state machine ([`FsmTable`]), [`JsonReducer`] a
//! JSON state that the user's [`Reduce`] computes.
//!
//! **Aggregation window.** A table with a window (`WINDOW_MS`, from the
//! contract's `aggregation.windowing.window_size_ms`) publishes nothing per
//! input: each input still moves the aggregate's state once, durably, and
//! opens or extends the aggregate's tumbling window (`[k * W, (k + 1) * W)`
//! of wall-clock time, from its first input). When a window has closed, the
//! runtime publishes one aggregated state per aggregate that changed in it
//! (`window: {start_ms, end_ms, inputs}`, the state before its first input
//! and after its last), with ids derived from the aggregate and the window
//! ([`crate::state::window_event_id`]), and then records the window closed.
//! A window whose record is larger than the bus takes can never be
//! published: it is dead-lettered (`window_too_large`) and recorded closed
//! all the same; one whose publish fails otherwise stays open and is
//! published again on a later tick.
//! The open window is part of the aggregate's durable state, so a restarted
//! or new owner of the partition publishes it; a crash between publishing
//! and recording publishes the same ids again.

use std::fmt;
use std::marker::PhantomData;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::aggregate::aggregate_key;
use crate::bus::Nack;
use crate::names::Named;
use crate::node::{
    Handled, HandlerContext, HandlerError, InboundEvent, NodeHandler, OutboundEvent,
};
use crate::state::{CommitError, DueWindow, DueWindows, StateContext, StateKeeper, StateStore};

/// What a reducer publishes, and where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReducerEvents {
    /// Event type of a state change (or, under an aggregation window, of
    /// the aggregated state of a window).
    pub state_changed: &'static str,
    /// Event type published when an aggregate reaches a terminal state.
    pub completed: &'static str,
    /// Where state changes go.
    pub result_topic: Option<&'static str>,
    /// Where terminal states are announced (the contract's `terminal_event`).
    pub terminal_topic: Option<&'static str>,
}

/// What a reducer keeps per aggregate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Kept<S> {
    /// The aggregate's state.
    pub state: S,
    /// Under an aggregation window: the window not published yet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window: Option<OpenWindow<S>>,
}

/// An aggregation window that has inputs and is not published yet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenWindow<S> {
    /// Start, milliseconds since the epoch (a multiple of the window).
    pub start_ms: i64,
    /// Inputs applied in it.
    pub inputs: u64,
    /// The state before its first input.
    pub before: S,
    /// Correlation id of its first input.
    pub correlation_id: Uuid,
    /// Event id of its first input.
    pub causation_id: Uuid,
}

/// Milliseconds since the epoch, now.
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Builds what a closed window publishes: `(key, kept state)` to events.
type WindowEvents<S> = fn(&str, &Kept<S>, &OpenWindow<S>, i64) -> Vec<OutboundEvent>;

/// The aggregates of a reducer: durable state per aggregate, and the
/// aggregation windows when the table has one.
struct Aggregates<S> {
    store: StateStore<Kept<S>>,
    window_ms: Option<i64>,
    window_events: WindowEvents<S>,
}

impl<S> Aggregates<S>
where
    S: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
{
    fn new(window_ms: Option<u64>, window_events: WindowEvents<S>) -> Self {
        Aggregates {
            store: StateStore::new(),
            window_ms: window_ms
                .filter(|ms| *ms > 0)
                .map(|ms| i64::try_from(ms).unwrap_or(i64::MAX)),
            window_events,
        }
    }

    fn current(&self, event: &InboundEvent, aggregate: &str) -> Option<Kept<S>> {
        self.store.get(event.partition, aggregate)
    }

    /// Stages `after` as the aggregate's state; returns whether the input
    /// publishes nothing itself (a window collects it).
    fn apply(
        &self,
        event: &InboundEvent,
        aggregate: &str,
        kept: Option<Kept<S>>,
        before: S,
        after: S,
    ) -> bool {
        let Some(window_ms) = self.window_ms else {
            let kept = Kept {
                state: after,
                window: None,
            };
            self.store.stage(event.partition, aggregate, kept);
            return false;
        };
        let window = match kept.and_then(|k| k.window) {
            // A window that closed but is not published yet takes the
            // input: it is published on the next tick, with it.
            Some(open) => OpenWindow {
                inputs: open.inputs + 1,
                ..open
            },
            None => {
                let now = now_ms();
                OpenWindow {
                    start_ms: now - now.rem_euclid(window_ms),
                    inputs: 1,
                    before,
                    correlation_id: event.envelope.correlation_id,
                    causation_id: event.envelope.event_id,
                }
            }
        };
        let kept = Kept {
            state: after,
            window: Some(window),
        };
        self.store.stage(event.partition, aggregate, kept);
        true
    }

    fn latest(&self, aggregate: &str) -> Option<S> {
        self.store.latest(aggregate).map(|k| k.state)
    }
}

#[async_trait]
impl<S> StateKeeper for Aggregates<S>
where
    S: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
{
    async fn admit(&self, ctx: &StateContext, event: &InboundEvent) -> Result<bool, Nack> {
        self.store.admit(ctx, event).await
    }

    fn check_staged(&self, event: &InboundEvent) -> Result<(), String> {
        self.store.check_staged(event)
    }

    async fn commit(&self, event: &InboundEvent) -> Result<(), CommitError> {
        self.store.commit(event).await
    }

    fn abandon(&self, event: &InboundEvent) {
        self.store.abandon(event)
    }

    fn revoked(&self, topic: &str, partitions: &[i32]) {
        self.store.revoked(topic, partitions)
    }

    async fn assigned(&self, ctx: &StateContext, partitions: &[i32]) -> Result<(), Nack> {
        self.store.assigned(ctx, partitions).await
    }

    fn window(&self) -> Option<Duration> {
        self.window_ms
            .map(|ms| Duration::from_millis(u64::try_from(ms).unwrap_or(0)))
    }

    async fn due_windows(&self, now_ms: i64) -> Option<DueWindows> {
        let window_ms = self.window_ms?;
        let turn = self.store.take_turn().await;
        let windows: Vec<DueWindow> = self
            .store
            .entries()
            .into_iter()
            .filter_map(|(partition, key, kept)| {
                let open = kept.window.clone()?;
                let end_ms = open.start_ms.saturating_add(window_ms);
                (end_ms <= now_ms).then(|| DueWindow {
                    partition,
                    events: (self.window_events)(&key, &kept, &open, end_ms),
                    key,
                    start_ms: open.start_ms,
                    correlation_id: open.correlation_id,
                    causation_id: open.causation_id,
                })
            })
            .collect();
        if windows.is_empty() {
            return None;
        }
        Some(DueWindows::new(windows, turn))
    }

    async fn windows_published(&self, due: DueWindows) -> Result<(), Nack> {
        for w in &due.windows {
            let Some(kept) = self.store.get(w.partition, &w.key) else {
                continue;
            };
            let closed = Kept {
                state: kept.state,
                window: None,
            };
            self.store
                .write_now(w.partition, &w.key, closed, w.correlation_id)
                .await?;
        }
        drop(due);
        Ok(())
    }
}

/// The `window` object of an aggregated state.
fn window_json<S>(open: &OpenWindow<S>, end_ms: i64) -> serde_json::Value {
    serde_json::json!({
        "start_ms": open.start_ms,
        "end_ms": end_ms,
        "inputs": open.inputs,
    })
}

/// A transition a state machine allows: the state it leads to and the
/// guards (of type `G`) that must all hold for it to be taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step<S: 'static, G: 'static> {
    /// The state the transition leads to.
    pub to: S,
    /// The guards that must all hold.
    pub guards: &'static [G],
}

impl<S, G> Step<S, G> {
    /// A transition to `to`, taken when every one of `guards` holds.
    pub const fn new(to: S, guards: &'static [G]) -> Self {
        Step { to, guards }
    }
}

/// Why a state machine refuses a trigger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError<S, T, G> {
    /// The contract declares no transition from `from` on `trigger`.
    #[error("no transition from state {from} on trigger {trigger}")]
    Undeclared {
        /// The state the aggregate is in.
        from: S,
        /// The trigger the event fired.
        trigger: T,
    },
    /// The transition is declared, but `guard` does not hold.
    #[error("guard {guard} rejected the transition from state {from} on trigger {trigger}")]
    GuardRejected {
        /// The state the aggregate is in.
        from: S,
        /// The trigger the event fired.
        trigger: T,
        /// The guard that does not hold.
        guard: G,
    },
}

/// The trigger an event names: the payload's `trigger` field, else the
/// envelope's event type, else the part of it after the last `.` (so
/// `pr-lifecycle.start_received` fires `start_received`).
pub fn default_trigger<T: Named>(event: &InboundEvent) -> Option<T> {
    let named = event
        .envelope
        .payload
        .get("trigger")
        .and_then(serde_json::Value::as_str);
    let event_type = event.envelope.event_type.as_str();
    let last_segment = event_type.rsplit('.').next().unwrap_or(event_type);
    [named, Some(event_type), Some(last_segment)]
        .into_iter()
        .flatten()
        .find_map(T::from_name)
}

/// A step of table `T`'s state machine.
pub type TableStep<T, H> = Step<<T as FsmTable<H>>::State, <T as FsmTable<H>>::Guard>;

/// Why table `T`'s state machine refuses a trigger.
pub type Refusal<T, H> = TransitionError<
    <T as FsmTable<H>>::State,
    <T as FsmTable<H>>::Trigger,
    <T as FsmTable<H>>::Guard,
>;

/// A contract's state machine, with the user's hooks `H` answering what the
/// contract leaves open (triggers, guards).
pub trait FsmTable<H>: Send + Sync + 'static {
    /// The states.
    type State: Copy + Eq + fmt::Display + Serialize + DeserializeOwned + Send + Sync + 'static;
    /// The triggers.
    type Trigger: Copy + fmt::Display + Serialize + Send + Sync + 'static;
    /// The guards (`std::convert::Infallible` when there are none).
    type Guard: Copy + fmt::Display + Send + Sync + 'static;
    /// The machine's name in the contract.
    const MACHINE: &'static str;
    /// The state every aggregate starts in.
    const INITIAL: Self::State;
    /// What is published.
    const EVENTS: ReducerEvents;
    /// The aggregation window in milliseconds, if the contract has one.
    const WINDOW_MS: Option<u64> = None;

    /// Whether no transition leaves `state`.
    fn is_terminal(state: Self::State) -> bool;

    /// The trigger `event` fires, or `None` to reject it.
    fn trigger_for(hooks: &H, event: &InboundEvent) -> Option<Self::Trigger>;

    /// The transitions the contract declares: the step `trigger` takes
    /// from `from`, or [`TransitionError::Undeclared`].
    fn transition(
        from: Self::State,
        trigger: Self::Trigger,
    ) -> Result<TableStep<Self, H>, Refusal<Self, H>>;

    /// Whether `guard` holds for `event`.
    fn guard(hooks: &H, guard: Self::Guard, event: &InboundEvent) -> bool;

    /// The state `trigger` moves `from` to: the declared transition, if
    /// every guard on it holds for `event`.
    fn next(
        hooks: &H,
        from: Self::State,
        trigger: Self::Trigger,
        event: &InboundEvent,
    ) -> Result<Self::State, Refusal<Self, H>> {
        let step = Self::transition(from, trigger)?;
        match step
            .guards
            .iter()
            .copied()
            .find(|g| !Self::guard(hooks, *g, event))
        {
            Some(guard) => Err(TransitionError::GuardRejected {
                from,
                trigger,
                guard,
            }),
            None => Ok(step.to),
        }
    }
}

/// The events of a state change (per input) or of a window (`window` set):
/// the change on the result topic, and the completion on the terminal topic
/// when the state is terminal.
fn fsm_events<T: FsmTable<H>, H>(
    aggregate: &str,
    mut change: serde_json::Value,
    to: T::State,
) -> Vec<OutboundEvent> {
    let terminal = T::is_terminal(to);
    change["terminal"] = serde_json::Value::Bool(terminal);
    let events = T::EVENTS;
    let mut out = Vec::new();
    if let Some(topic) = events.result_topic {
        out.push(
            OutboundEvent::new(topic, events.state_changed, change.clone())
                .with_partition_key(aggregate),
        );
    }
    if let Some(topic) = events
        .terminal_topic
        .filter(|t| terminal && Some(*t) != events.result_topic)
    {
        out.push(OutboundEvent::new(topic, events.completed, change).with_partition_key(aggregate));
    }
    out
}

fn fsm_window_events<T: FsmTable<H>, H>(
    aggregate: &str,
    kept: &Kept<T::State>,
    open: &OpenWindow<T::State>,
    end_ms: i64,
) -> Vec<OutboundEvent> {
    let change = serde_json::json!({
        "aggregate_id": aggregate,
        "from_state": open.before,
        "to_state": kept.state,
        "window": window_json(open, end_ms),
    });
    fsm_events::<T, H>(aggregate, change, kept.state)
}

/// A reducer moving one `T` state machine per aggregate.
pub struct FsmReducer<T: FsmTable<H>, H> {
    hooks: H,
    aggregates: Aggregates<T::State>,
    table: PhantomData<fn() -> T>,
}

impl<T: FsmTable<H>, H: Send + Sync + 'static> FsmReducer<T, H> {
    /// A reducer answering through `hooks`.
    pub fn new(hooks: H) -> Self {
        FsmReducer {
            hooks,
            aggregates: Aggregates::new(T::WINDOW_MS, fsm_window_events::<T, H>),
            table: PhantomData,
        }
    }

    /// The latest state of an aggregate.
    pub fn state_of(&self, aggregate: &str) -> T::State {
        self.aggregates.latest(aggregate).unwrap_or(T::INITIAL)
    }
}

#[async_trait]
impl<T: FsmTable<H>, H: Send + Sync + 'static> NodeHandler for FsmReducer<T, H> {
    async fn handle(&self, _ctx: &HandlerContext, event: &InboundEvent) -> Handled {
        let trigger = T::trigger_for(&self.hooks, event).ok_or_else(|| {
            HandlerError::InvalidInput(format!(
                "event type {:?} fires no trigger of the {} state machine",
                event.envelope.event_type,
                T::MACHINE
            ))
        })?;
        let aggregate = aggregate_key(event);
        let kept = self.aggregates.current(event, &aggregate);
        let from = kept.as_ref().map_or(T::INITIAL, |k| k.state);
        let to = T::next(&self.hooks, from, trigger, event)
            .map_err(|refused| HandlerError::InvalidInput(refused.to_string()))?;
        tracing::info!(%aggregate, %from, %to, %trigger, "state changed");
        if self.aggregates.apply(event, &aggregate, kept, from, to) {
            return Ok(Vec::new());
        }
        let change = serde_json::json!({
            "aggregate_id": aggregate,
            "from_state": from,
            "to_state": to,
            "trigger": trigger,
        });
        Ok(fsm_events::<T, H>(&aggregate, change, to))
    }

    fn state_keeper(&self) -> Option<&dyn StateKeeper> {
        Some(&self.aggregates)
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
    /// The aggregation window in milliseconds, if the contract has one.
    const WINDOW_MS: Option<u64> = None;
}

fn json_window_events<T: ReducerTable>(
    aggregate: &str,
    kept: &Kept<serde_json::Value>,
    open: &OpenWindow<serde_json::Value>,
    end_ms: i64,
) -> Vec<OutboundEvent> {
    let events = T::EVENTS;
    let change = serde_json::json!({
        "aggregate_id": aggregate,
        "state": kept.state,
        "before": open.before,
        "window": window_json(open, end_ms),
    });
    events
        .result_topic
        .map(|topic| {
            OutboundEvent::new(topic, events.state_changed, change).with_partition_key(aggregate)
        })
        .into_iter()
        .collect()
}

/// A reducer keeping one JSON state per aggregate, computed by `H`.
pub struct JsonReducer<T, H> {
    reducer: H,
    aggregates: Aggregates<serde_json::Value>,
    table: PhantomData<fn() -> T>,
}

impl<T: ReducerTable, H: Reduce> JsonReducer<T, H> {
    /// A reducer computing states with `reducer`.
    pub fn new(reducer: H) -> Self {
        JsonReducer {
            reducer,
            aggregates: Aggregates::new(T::WINDOW_MS, json_window_events::<T>),
            table: PhantomData,
        }
    }

    /// The latest state of an aggregate (`null` when it has none yet).
    pub fn state_of(&self, aggregate: &str) -> serde_json::Value {
        self.aggregates
            .latest(aggregate)
            .unwrap_or(serde_json::Value::Null)
    }
}

#[async_trait]
impl<T: ReducerTable, H: Reduce> NodeHandler for JsonReducer<T, H> {
    async fn handle(&self, _ctx: &HandlerContext, event: &InboundEvent) -> Handled {
        let aggregate = aggregate_key(event);
        let kept = self.aggregates.current(event, &aggregate);
        let current = kept
            .as_ref()
            .map_or(serde_json::Value::Null, |k| k.state.clone());
        let state = self.reducer.reduce(&current, event)?;
        if self
            .aggregates
            .apply(event, &aggregate, kept, current, state.clone())
        {
            return Ok(Vec::new());
        }
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
        Some(&self.aggregates)
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

    /// A light: off -on-> on -off-> off, `break` from anywhere to broken
    /// (terminal); publishing once per `WINDOW_MS` window when that is not 0.
    struct Light<const WINDOW_MS: u64 = 0>;

    /// The light, publishing once per 1 s window.
    type WindowedLight = Light<1000>;

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

    impl<const WINDOW_MS: u64> FsmTable<()> for Light<WINDOW_MS> {
        type State = Lamp;
        type Trigger = &'static str;
        type Guard = std::convert::Infallible;
        const MACHINE: &'static str = "light";
        const INITIAL: Lamp = Lamp::Off;
        const EVENTS: ReducerEvents = ReducerEvents {
            state_changed: "light.state-changed",
            completed: "light.completed",
            result_topic: Some("changes"),
            terminal_topic: Some("closed"),
        };
        const WINDOW_MS: Option<u64> = if WINDOW_MS == 0 {
            None
        } else {
            Some(WINDOW_MS)
        };

        fn is_terminal(state: Lamp) -> bool {
            state == Lamp::Broken
        }

        fn trigger_for(_: &(), event: &InboundEvent) -> Option<&'static str> {
            ["on", "off", "break"]
                .into_iter()
                .find(|t| *t == event.envelope.event_type)
        }

        fn transition(
            from: Lamp,
            trigger: &'static str,
        ) -> Result<Step<Lamp, Self::Guard>, TransitionError<Lamp, &'static str, Self::Guard>>
        {
            match (from, trigger) {
                (Lamp::Off, "on") => Ok(Step::new(Lamp::On, &[])),
                (Lamp::On, "off") => Ok(Step::new(Lamp::Off, &[])),
                (f, "break") if f != Lamp::Broken => Ok(Step::new(Lamp::Broken, &[])),
                _ => Err(TransitionError::Undeclared { from, trigger }),
            }
        }

        fn guard(_: &(), guard: Self::Guard, _: &InboundEvent) -> bool {
            match guard {}
        }
    }

    crate::named_enum! {
        enum Door {
            Shut = "shut",
            Open = "open",
        }
    }

    crate::named_enum! {
        enum Push {
            Push = "push",
            Slam = "door.slam",
        }
    }

    crate::named_enum! {
        enum Lock {
            Unlocked = "unlocked",
        }
    }

    /// A door: `push` opens a shut one if it is unlocked (the hooks say
    /// whether it is); nothing else is declared.
    struct DoorTable;

    impl FsmTable<bool> for DoorTable {
        type State = Door;
        type Trigger = Push;
        type Guard = Lock;
        const MACHINE: &'static str = "door";
        const INITIAL: Door = Door::Shut;
        const EVENTS: ReducerEvents = ReducerEvents {
            state_changed: "door.state-changed",
            completed: "door.completed",
            result_topic: None,
            terminal_topic: None,
        };

        fn is_terminal(_: Door) -> bool {
            false
        }

        fn trigger_for(_: &bool, event: &InboundEvent) -> Option<Push> {
            default_trigger(event)
        }

        fn transition(
            from: Door,
            trigger: Push,
        ) -> Result<Step<Door, Lock>, TransitionError<Door, Push, Lock>> {
            match (from, trigger) {
                (Door::Shut, Push::Push) => Ok(Step::new(Door::Open, &[Lock::Unlocked])),
                (from, trigger) => Err(TransitionError::Undeclared { from, trigger }),
            }
        }

        fn guard(unlocked: &bool, guard: Lock, _: &InboundEvent) -> bool {
            match guard {
                Lock::Unlocked => *unlocked,
            }
        }
    }

    #[test]
    fn a_declared_transition_is_taken_only_when_its_guards_hold() {
        let push = crate::testing::inbound("in", "push", json!({}));
        assert_eq!(
            DoorTable::next(&true, Door::Shut, Push::Push, &push),
            Ok(Door::Open)
        );
        let refused = DoorTable::next(&false, Door::Shut, Push::Push, &push).unwrap_err();
        assert_eq!(
            refused,
            TransitionError::GuardRejected {
                from: Door::Shut,
                trigger: Push::Push,
                guard: Lock::Unlocked
            }
        );
        assert_eq!(
            refused.to_string(),
            "guard unlocked rejected the transition from state shut on trigger push"
        );
        let undeclared = DoorTable::next(&true, Door::Open, Push::Push, &push).unwrap_err();
        assert_eq!(
            undeclared.to_string(),
            "no transition from state open on trigger push"
        );
    }

    #[test]
    fn the_default_trigger_is_the_payload_field_else_the_event_type_or_its_last_segment() {
        let trigger = |event_type: &str, payload| {
            DoorTable::trigger_for(&true, &crate::testing::inbound("in", event_type, payload))
        };
        assert_eq!(
            trigger("anything", json!({ "trigger": "push" })),
            Some(Push::Push)
        );
        assert_eq!(trigger("push", json!({})), Some(Push::Push));
        assert_eq!(trigger("door.slam", json!({})), Some(Push::Slam));
        assert_eq!(trigger("house.door.push", json!({})), Some(Push::Push));
        assert_eq!(trigger("pull", json!({ "trigger": "pull" })), None);
        assert_eq!(Door::from_name("open"), Some(Door::Open));
        assert_eq!(Push::from_name("push"), Some(Push::Push));
        assert_eq!(Lock::from_name("unlocked"), Some(Lock::Unlocked));
    }

    fn event(trigger: &str, aggregate: &str, offset: i64) -> InboundEvent {
        let mut e = crate::testing::inbound("in", trigger, json!({ "aggregate_id": aggregate }));
        e.offset = offset;
        e
    }

    /// A snapshot topic on a fresh in-memory bus.
    fn light_context() -> StateContext {
        let bus: Arc<dyn EventBus> = Arc::new(InMemoryBus::default());
        StateContext {
            bus,
            topic: "onex.snapshot.demo.light.v1".into(),
        }
    }

    #[tokio::test]
    async fn the_state_moves_only_when_committed() {
        let ctx = light_context();
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
        let fresh_keeper = fresh.state_keeper().unwrap();
        let on = event("on", "l1", 2);
        assert!(fresh_keeper.admit(&ctx, &on).await.unwrap());
        let refused = fresh.handle(&crate::testing::context(), &on).await;
        assert!(matches!(refused, Err(HandlerError::InvalidInput(m)) if m.contains("Broken")));
        fresh_keeper.abandon(&on);
    }

    /// Handles `event` as the runtime does: admit, handle, commit.
    async fn apply<N: NodeHandler>(
        node: &N,
        ctx: &StateContext,
        event: &InboundEvent,
    ) -> Vec<OutboundEvent> {
        let keeper = node.state_keeper().expect("keeps state");
        assert!(keeper.admit(ctx, event).await.unwrap());
        let out = node
            .handle(&crate::testing::context(), event)
            .await
            .unwrap();
        keeper.commit(event).await.unwrap();
        out
    }

    #[tokio::test]
    async fn a_window_publishes_one_aggregated_state_per_aggregate() {
        let ctx = light_context();
        let node: FsmReducer<WindowedLight, ()> = FsmReducer::new(());
        let keeper = node.state_keeper().unwrap();
        assert_eq!(keeper.window(), Some(Duration::from_secs(1)));
        for (offset, (trigger, lamp)) in [("on", "l1"), ("off", "l1"), ("on", "l1"), ("on", "l2")]
            .into_iter()
            .enumerate()
        {
            let out = apply(&node, &ctx, &event(trigger, lamp, offset as i64)).await;
            assert!(out.is_empty(), "a window publishes nothing per input");
        }
        assert_eq!(node.state_of("l1"), Lamp::On);
        let first = node
            .aggregates
            .store
            .get(0, "l1")
            .and_then(|k| k.window)
            .expect("an open window");
        let end = first.start_ms + 1000;
        assert_eq!(first.inputs, 3);
        assert!(
            keeper.due_windows(end - 1).await.is_none(),
            "not closed yet"
        );

        // Closed: one event per aggregate, the state before and after.
        let due = keeper.due_windows(end).await.expect("closed windows");
        let keys: Vec<&str> = due.windows.iter().map(|w| w.key.as_str()).collect();
        assert_eq!(keys, ["l1", "l2"]);
        let l1 = due.windows[0].clone();
        assert_eq!(l1.events.len(), 1);
        assert_eq!(
            l1.events[0].payload,
            json!({
                "aggregate_id": "l1",
                "from_state": "off",
                "to_state": "on",
                "terminal": false,
                "window": { "start_ms": first.start_ms, "end_ms": end, "inputs": 3 },
            })
        );

        // A new process before the windows were recorded as published
        // finds them again, with the same first input (so the same ids).
        let fresh: FsmReducer<WindowedLight, ()> = FsmReducer::new(());
        let later = event("on", "l3", 4);
        apply(&fresh, &ctx, &later).await;
        drop(due);
        let again = keeper.due_windows(end).await.unwrap();
        let fresh_keeper = fresh.state_keeper().unwrap();
        let fresh_due = fresh_keeper.due_windows(end).await.unwrap();
        let l1_fresh = fresh_due.windows.iter().find(|w| w.key == "l1").unwrap();
        assert_eq!(
            (l1_fresh.start_ms, l1_fresh.causation_id, &l1_fresh.events),
            (l1.start_ms, l1.causation_id, &again.windows[0].events)
        );
        drop(fresh_due);

        // Recorded: nothing is due any more, here or in a new process.
        keeper.windows_published(again).await.unwrap();
        assert!(keeper.due_windows(end).await.is_none());
        let restarted: FsmReducer<WindowedLight, ()> = FsmReducer::new(());
        apply(&restarted, &ctx, &event("off", "l2", 5)).await;
        let restarted_keeper = restarted.state_keeper().unwrap();
        let left = restarted_keeper
            .due_windows(i64::MAX)
            .await
            .expect("the new windows");
        let keys: Vec<&str> = left.windows.iter().map(|w| w.key.as_str()).collect();
        assert_eq!(
            keys,
            ["l2", "l3"],
            "l1 was published; l2 has a new input, l3 one of its own"
        );
        assert_eq!(restarted.state_of("l1"), Lamp::On);
    }

    #[tokio::test]
    async fn an_input_waits_while_windows_are_published() {
        let ctx = light_context();
        let node: FsmReducer<WindowedLight, ()> = FsmReducer::new(());
        apply(&node, &ctx, &event("on", "l1", 0)).await;
        let keeper = node.state_keeper().unwrap();
        let due = keeper.due_windows(i64::MAX).await.unwrap();
        let next = event("off", "l1", 1);
        let admitted =
            tokio::time::timeout(Duration::from_millis(100), keeper.admit(&ctx, &next)).await;
        assert!(
            admitted.is_err(),
            "the input was admitted during the publish"
        );
        keeper.windows_published(due).await.unwrap();
        assert!(keeper.admit(&ctx, &next).await.unwrap());
        keeper.abandon(&next);
    }
}
