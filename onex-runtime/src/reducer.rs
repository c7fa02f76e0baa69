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
//! all the same; one whose publish fails otherwise waits and is published
//! again on a later tick.
//! What a window publishes is fixed when it ends: an input that comes after
//! its end opens the next window, even while the ended one waits to be
//! published. Its events may be out already (a publish that timed out, a
//! crash before the record), and a consumer takes an id once, so a copy
//! published again must be the same. At most [`MAX_CLOSED_WINDOWS`] ended
//! windows of an aggregate wait; its next input waits for them, as does an
//! input whose snapshot record they would make larger than the bus takes
//! (each leaves the record when it is published).
//! The windows not published yet are part of the aggregate's durable state,
//! so a restarted or new owner of the partition publishes them; a crash
//! between publishing and recording publishes the same events again.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
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
    /// Under an aggregation window: the latest window not published yet.
    /// It takes inputs until it ends.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window: Option<OpenWindow<S>>,
    /// Under an aggregation window: earlier windows that ended before an
    /// input opened `window`, not published yet, oldest first.
    #[serde(default = "Vec::new", skip_serializing_if = "Vec::is_empty")]
    pub closed: Vec<ClosedWindow<S>>,
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

impl<S> OpenWindow<S> {
    /// Its end (exclusive), milliseconds since the epoch, for windows of
    /// `window_ms`.
    fn end_ms(&self, window_ms: i64) -> i64 {
        self.start_ms.saturating_add(window_ms)
    }
}

/// A window that ended and is not published yet, with the state it ended
/// in: what it publishes no longer changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClosedWindow<S> {
    /// The window.
    pub window: OpenWindow<S>,
    /// The state after its last input.
    pub state: S,
}

/// How many ended windows of one aggregate may wait to be published. Its
/// next input waits (is delivered again) while that many do: only a bus
/// that takes the state records but not the windows' events lets them
/// pile up.
pub const MAX_CLOSED_WINDOWS: usize = 16;

/// Milliseconds since the epoch, now.
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Builds what a closed window publishes: `(key, state after the window,
/// window, end)` to events.
type WindowEvents<S> = fn(&str, &S, &OpenWindow<S>, i64) -> Vec<OutboundEvent>;

/// Where windows take the time from: milliseconds since the epoch.
type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The aggregates of a reducer: durable state per aggregate, and the
/// aggregation windows when the table has one.
struct Aggregates<S> {
    store: StateStore<Kept<S>>,
    window_ms: Option<i64>,
    window_events: WindowEvents<S>,
    clock: Clock,
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
            clock: Arc::new(now_ms),
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
                closed: Vec::new(),
            };
            self.store.stage(event.partition, aggregate, kept);
            return false;
        };
        let now = (self.clock)();
        let (current, mut closed) = kept.map_or((None, Vec::new()), |k| (k.window, k.closed));
        let window = match current {
            Some(open) if now < open.end_ms(window_ms) => OpenWindow {
                inputs: open.inputs + 1,
                ..open
            },
            ended => {
                // A window that ended keeps what it publishes, published or
                // not: its events may be out already under their ids, which
                // a consumer takes once. The input opens the next window.
                if let Some(window) = ended {
                    closed.push(ClosedWindow {
                        window,
                        state: before.clone(),
                    });
                }
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
            closed,
        };
        self.store.stage(event.partition, aggregate, kept);
        true
    }

    fn latest(&self, aggregate: &str) -> Option<S> {
        self.store.latest(aggregate).map(|k| k.state)
    }

    /// How many ended windows wait to be published in what `event` staged
    /// for its aggregate.
    fn waiting_windows(&self, event: &InboundEvent) -> usize {
        self.store
            .latest(&aggregate_key(event))
            .map_or(0, |k| k.closed.len())
    }

    /// A record too large while `waiting` ended windows are in it is too
    /// large for now: each window leaves it when it is published, so the
    /// input waits for them (is delivered again) rather than being
    /// dead-lettered. With none waiting it is too large for good.
    fn until_published(e: CommitError, waiting: usize) -> CommitError {
        match e {
            CommitError::TooLarge(reason) if waiting > 0 => CommitError::Retry(Nack::new(format!(
                "{reason} for now: {waiting} ended window(s) in it wait to be published, \
                 and the input waits for them"
            ))),
            e => e,
        }
    }
}

#[async_trait]
impl<S> StateKeeper for Aggregates<S>
where
    S: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
{
    async fn admit(&self, ctx: &StateContext, event: &InboundEvent) -> Result<bool, Nack> {
        if !self.store.admit(ctx, event).await? {
            return Ok(false);
        }
        if self.window_ms.is_none() {
            return Ok(true);
        }
        let aggregate = aggregate_key(event);
        let waiting = self
            .store
            .get(event.partition, &aggregate)
            .map_or(0, |k| k.closed.len());
        if waiting >= MAX_CLOSED_WINDOWS {
            self.store.abandon(event);
            return Err(Nack::new(format!(
                "{waiting} ended windows of {aggregate} wait to be published; \
                 its next input waits for them"
            )));
        }
        Ok(true)
    }

    fn check_staged(&self, event: &InboundEvent) -> Result<(), CommitError> {
        let waiting = self.waiting_windows(event);
        self.store
            .check_staged(event)
            .map_err(|e| Self::until_published(e, waiting))
    }

    async fn commit(&self, event: &InboundEvent) -> Result<(), CommitError> {
        let waiting = self.waiting_windows(event);
        self.store
            .commit(event)
            .await
            .map_err(|e| Self::until_published(e, waiting))
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
        let mut windows = Vec::new();
        for (partition, key, kept) in self.store.entries() {
            let open = kept
                .window
                .filter(|w| w.end_ms(window_ms) <= now_ms)
                .map(|window| ClosedWindow {
                    window,
                    state: kept.state,
                });
            for ClosedWindow { window, state } in kept.closed.into_iter().chain(open) {
                let end_ms = window.end_ms(window_ms);
                windows.push(DueWindow {
                    partition,
                    events: (self.window_events)(&key, &state, &window, end_ms),
                    key: key.clone(),
                    start_ms: window.start_ms,
                    correlation_id: window.correlation_id,
                    causation_id: window.causation_id,
                });
            }
        }
        if windows.is_empty() {
            return None;
        }
        Some(DueWindows::new(windows, turn))
    }

    /// Records each aggregate's published windows closed, with one state
    /// record per aggregate.
    async fn windows_published(&self, due: DueWindows) -> Result<(), Nack> {
        // An aggregate's windows are due together, oldest first.
        let mut aggregates: Vec<(&DueWindow, Vec<i64>)> = Vec::new();
        for w in &due.windows {
            match aggregates.last_mut() {
                Some((first, starts)) if first.partition == w.partition && first.key == w.key => {
                    starts.push(w.start_ms)
                }
                _ => aggregates.push((w, vec![w.start_ms])),
            }
        }
        for (first, starts) in aggregates {
            let Some(mut kept) = self.store.get(first.partition, &first.key) else {
                continue;
            };
            kept.closed.retain(|c| !starts.contains(&c.window.start_ms));
            kept.window = kept.window.filter(|w| !starts.contains(&w.start_ms));
            self.store
                .write_now(first.partition, &first.key, kept, first.correlation_id)
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
    after: &T::State,
    open: &OpenWindow<T::State>,
    end_ms: i64,
) -> Vec<OutboundEvent> {
    let change = serde_json::json!({
        "aggregate_id": aggregate,
        "from_state": open.before,
        "to_state": after,
        "window": window_json(open, end_ms),
    });
    fsm_events::<T, H>(aggregate, change, *after)
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
    after: &serde_json::Value,
    open: &OpenWindow<serde_json::Value>,
    end_ms: i64,
) -> Vec<OutboundEvent> {
    let events = T::EVENTS;
    let change = serde_json::json!({
        "aggregate_id": aggregate,
        "state": after,
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
    use std::sync::atomic::{AtomicI64, Ordering};

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
        let mut node: FsmReducer<WindowedLight, ()> = FsmReducer::new(());
        // Every input in one window, wherever the wall clock is.
        test_clock(&mut node);
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

    /// Sets the windows of `node` on a clock the test moves: the returned
    /// milliseconds since the epoch, starting 100 ms into a window.
    fn test_clock<T: FsmTable<()>>(node: &mut FsmReducer<T, ()>) -> Arc<AtomicI64> {
        let now = Arc::new(AtomicI64::new(1_700_000_000_100));
        let read = now.clone();
        node.aggregates.clock = Arc::new(move || read.load(Ordering::SeqCst));
        now
    }

    /// The windows due at `now_ms`, as (aggregate, start, payload of the
    /// first event), and the turn they hold.
    async fn due_at(
        keeper: &dyn StateKeeper,
        now_ms: i64,
    ) -> (Vec<(String, i64, serde_json::Value)>, DueWindows) {
        let due = keeper.due_windows(now_ms).await.expect("windows due");
        let seen = due
            .windows
            .iter()
            .map(|w| (w.key.clone(), w.start_ms, w.events[0].payload.clone()))
            .collect();
        (seen, due)
    }

    #[tokio::test]
    async fn an_input_after_a_window_ended_opens_the_next_one() {
        let ctx = light_context();
        let mut node: FsmReducer<WindowedLight, ()> = FsmReducer::new(());
        let clock = test_clock(&mut node);
        let start = clock.load(Ordering::SeqCst) - 100;
        apply(&node, &ctx, &event("on", "l1", 0)).await;
        let keeper = node.state_keeper().unwrap();

        // The window ended; its publish went out, or not: the process
        // cannot tell (a timed-out publish, a crash before the record).
        clock.store(start + 1000, Ordering::SeqCst);
        let (first, due) = due_at(keeper, start + 1000).await;
        assert_eq!(first.len(), 1);
        drop(due);

        // A later input does not change what that window publishes: its
        // ids are out already, maybe, and a consumer keeps the first copy.
        apply(&node, &ctx, &event("off", "l1", 1)).await;
        assert_eq!(node.state_of("l1"), Lamp::Off);
        let (again, due) = due_at(keeper, start + 1500).await;
        assert_eq!(again, first, "the ended window publishes the same, once");
        drop(due);

        // Once the next window ended too, both are due, in order; a new
        // process restoring the partition finds the same.
        let (both, due) = due_at(keeper, start + 2000).await;
        let second = json!({
            "aggregate_id": "l1",
            "from_state": "on",
            "to_state": "off",
            "terminal": false,
            "window": { "start_ms": start + 1000, "end_ms": start + 2000, "inputs": 1 },
        });
        assert_eq!(
            both,
            [first[0].clone(), ("l1".into(), start + 1000, second)]
        );
        drop(due);
        let fresh: FsmReducer<WindowedLight, ()> = FsmReducer::new(());
        apply(&fresh, &ctx, &event("on", "l2", 2)).await;
        let fresh_keeper = fresh.state_keeper().unwrap();
        let (restored, due) = due_at(fresh_keeper, start + 2000).await;
        assert_eq!(restored[..2], both[..]);
        drop(due);

        // Published: nothing of l1 is due any more, here or after a restore.
        let due = keeper.due_windows(start + 2000).await.unwrap();
        keeper.windows_published(due).await.unwrap();
        assert!(keeper.due_windows(i64::MAX).await.is_none());
        let restarted: FsmReducer<WindowedLight, ()> = FsmReducer::new(());
        apply(&restarted, &ctx, &event("on", "l3", 3)).await;
        let (left, due) = due_at(restarted.state_keeper().unwrap(), i64::MAX).await;
        let keys: Vec<&str> = left.iter().map(|(k, _, _)| k.as_str()).collect();
        assert_eq!(keys, ["l2", "l3"]);
        drop(due);
    }

    #[tokio::test]
    async fn an_aggregate_waits_while_its_ended_windows_pile_up() {
        let ctx = light_context();
        let mut node: FsmReducer<WindowedLight, ()> = FsmReducer::new(());
        let clock = test_clock(&mut node);
        let keeper = node.state_keeper().unwrap();
        // One input a window, none published: every window but the last
        // waits, ended.
        for offset in 0..=MAX_CLOSED_WINDOWS as i64 {
            let trigger = if offset % 2 == 0 { "on" } else { "off" };
            apply(&node, &ctx, &event(trigger, "l1", offset)).await;
            clock.fetch_add(1000, Ordering::SeqCst);
        }
        let next = event("on", "l1", 200);
        let refused = keeper.admit(&ctx, &next).await.unwrap_err();
        assert!(
            refused.reason.contains("16 ended windows of l1"),
            "{}",
            refused.reason
        );
        // Another aggregate goes on, and the refusal gave the turn back.
        apply(&node, &ctx, &event("on", "l2", 100)).await;

        let due = keeper
            .due_windows(clock.load(Ordering::SeqCst))
            .await
            .unwrap();
        let starts: Vec<i64> = due
            .windows
            .iter()
            .filter(|w| w.key == "l1")
            .map(|w| w.start_ms)
            .collect();
        assert_eq!(starts.len(), MAX_CLOSED_WINDOWS + 1);
        assert!(starts.windows(2).all(|p| p[1] - p[0] == 1000), "{starts:?}");
        keeper.windows_published(due).await.unwrap();
        assert!(keeper.admit(&ctx, &next).await.unwrap());
        keeper.abandon(&next);
    }
}
