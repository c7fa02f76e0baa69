//! The orchestrator driver: runs a contract's workflow steps in order, once
//! per consumed event, with the progress of every run kept on the bus
//! ([`crate::state`]).
//!
//! - A workflow instance is identified by the consumed event's id; a
//!   redelivered input (after a crash, a rebalance or a failed publish)
//!   resumes at the first unfinished step and never runs a finished one
//!   again. Progress is written after each step; a write the bus cannot
//!   take for now does not stop the run (the process keeps the progress,
//!   and the run's final state takes it to the bus).
//! - A failing step fails the handler call: the runtime retries it with the
//!   contract's backoff and jitter, counting each failure for the handler's
//!   circuit breaker, and the run resumes at that step. A workflow that
//!   still fails is dead-lettered and announced on its failure topic.
//! - Every step gets an idempotency key (workflow id + step id,
//!   [`WorkflowRun::idempotency_key`]) to pass to the systems it calls.

use std::collections::HashMap;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Mutex;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::dlq::Failure;
use crate::names::Named;
use crate::node::{
    Handled, HandlerContext, HandlerError, InboundEvent, NodeHandler, OutboundEvent,
};
use crate::state::{CommitError, StateKeeper, StateStore};

/// One run of a workflow: the triggering event's payload and the results of
/// the steps completed so far.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkflowRun {
    /// The workflow instance: the id of the event that started it.
    pub workflow_id: Uuid,
    /// Correlation id of the triggering event.
    pub correlation_id: Uuid,
    /// The triggering event's payload.
    pub input: serde_json::Value,
    /// Results of completed steps, by step id.
    pub results: serde_json::Map<String, serde_json::Value>,
}

impl WorkflowRun {
    /// A run with no step completed yet.
    pub fn new(workflow_id: Uuid, correlation_id: Uuid, input: serde_json::Value) -> Self {
        WorkflowRun {
            workflow_id,
            correlation_id,
            input,
            results: serde_json::Map::new(),
        }
    }

    /// The result of a completed step.
    pub fn result(&self, step: impl AsRef<str>) -> Option<&serde_json::Value> {
        self.results.get(step.as_ref())
    }

    /// The key under which `step` of this run should be carried out exactly
    /// once by the systems it calls: `<workflow id>:<step id>`, the same on
    /// every retry and after every restart.
    pub fn idempotency_key(&self, step: impl AsRef<str>) -> String {
        format!("{}:{}", self.workflow_id, step.as_ref())
    }
}

/// What a workflow publishes, and where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkflowEvents {
    /// The workflow's name in the contract.
    pub workflow: &'static str,
    /// Event type of a completed step.
    pub step_completed: &'static str,
    /// Event type of a completed workflow.
    pub workflow_completed: &'static str,
    /// Event type of a failed workflow.
    pub workflow_failed: &'static str,
    /// Where step events go.
    pub result_topic: Option<&'static str>,
    /// Where the completion goes.
    pub completion_topic: Option<&'static str>,
    /// The contract's `terminal_event` topic.
    pub terminal_topic: Option<&'static str>,
    /// Where failures are announced (else the completion topic).
    pub failure_topic: Option<&'static str>,
}

/// The future of one step.
pub type StepFuture<'a> =
    Pin<Box<dyn Future<Output = Result<serde_json::Value, HandlerError>> + Send + 'a>>;

/// A contract's workflow, carried out by the user's hooks `H`.
pub trait WorkflowTable<H>: Send + Sync + 'static {
    /// The steps, in the order they run (every step after those it depends
    /// on), by their ids in the contract.
    type Step: Named;
    /// What is published.
    const EVENTS: WorkflowEvents;

    /// Runs `step`.
    fn run_step<'a>(
        hooks: &'a H,
        step: Self::Step,
        ctx: &'a HandlerContext,
        run: &'a WorkflowRun,
    ) -> StepFuture<'a>;
}

/// The durable progress of one workflow instance.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Progress {
    results: serde_json::Map<String, serde_json::Value>,
}

/// An orchestrator running the `T` workflow with the hooks `H`.
pub struct WorkflowDriver<T, H> {
    hooks: H,
    store: StateStore<Progress>,
    /// The step each failing workflow stopped at, for its failure event.
    failed_at: Mutex<HashMap<Uuid, &'static str>>,
    table: PhantomData<fn() -> T>,
}

impl<T: WorkflowTable<H>, H: Send + Sync + 'static> WorkflowDriver<T, H> {
    /// A driver running steps with `hooks`.
    pub fn new(hooks: H) -> Self {
        WorkflowDriver {
            hooks,
            store: StateStore::new(),
            failed_at: Mutex::new(HashMap::new()),
            table: PhantomData,
        }
    }

    /// The steps a workflow instance has completed, in order.
    pub fn completed_steps(&self, workflow_id: Uuid) -> Vec<&'static str> {
        let progress = self
            .store
            .latest(&workflow_id.to_string())
            .unwrap_or_default();
        T::Step::ALL
            .iter()
            .map(|s| s.as_str())
            .filter(|s| progress.results.contains_key(*s))
            .collect()
    }

    fn failed_at(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, &'static str>> {
        self.failed_at.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn step_error(step: &str, error: HandlerError) -> HandlerError {
    match error {
        HandlerError::InvalidInput(m) => HandlerError::InvalidInput(format!("step {step}: {m}")),
        HandlerError::Retriable(m) => HandlerError::Retriable(format!("step {step}: {m}")),
        HandlerError::Fatal(m) => HandlerError::Fatal(format!("step {step}: {m}")),
    }
}

#[async_trait]
impl<T: WorkflowTable<H>, H: Send + Sync + 'static> NodeHandler for WorkflowDriver<T, H> {
    async fn handle(&self, ctx: &HandlerContext, event: &InboundEvent) -> Handled {
        let workflow_id = event.envelope.event_id;
        let key = workflow_id.to_string();
        let progress = self.store.get(event.partition, &key).unwrap_or_default();
        let mut run = WorkflowRun {
            results: progress.results,
            ..WorkflowRun::new(
                workflow_id,
                event.envelope.correlation_id,
                event.envelope.payload.clone(),
            )
        };
        for &id in T::Step::ALL {
            let step = id.as_str();
            if run.results.contains_key(step) {
                tracing::debug!(%workflow_id, step, "step finished before; not run again");
                continue;
            }
            let result = match T::run_step(&self.hooks, id, ctx, &run).await {
                Ok(result) => result,
                Err(error) => {
                    tracing::warn!(%workflow_id, step, %error, "workflow step failed");
                    self.failed_at().insert(workflow_id, step);
                    return Err(step_error(step, error));
                }
            };
            run.results.insert(step.to_owned(), result);
            let progress = Progress {
                results: run.results.clone(),
            };
            match self.store.record_progress(event, &key, progress).await {
                Ok(()) => {}
                // The bus cannot take it for now. Failing the run here would
                // have the retry run this finished step again, and an outage
                // outlasting the retries dead-letter the workflow. The process
                // keeps the progress and the run goes on: the state written
                // with the run's outcome takes it to the bus (a crash before
                // that runs the step again, with the same idempotency key).
                Err(CommitError::Retry(nack)) => tracing::warn!(
                    %workflow_id,
                    step,
                    "the progress is not on the bus yet; the run goes on: {}",
                    nack.reason
                ),
                // No retry makes it fit: dead-lettered at once.
                Err(CommitError::TooLarge(reason)) => return Err(HandlerError::Fatal(reason)),
            }
        }
        self.failed_at().remove(&workflow_id);
        self.store.stage(
            event.partition,
            &key,
            Progress {
                results: run.results.clone(),
            },
        );

        let events = T::EVENTS;
        let mut out = Vec::new();
        if let Some(topic) = events.result_topic {
            for step in T::Step::ALL.iter().map(|s| s.as_str()) {
                out.push(OutboundEvent::new(
                    topic,
                    events.step_completed,
                    serde_json::json!({
                        "workflow": events.workflow,
                        "workflow_id": workflow_id,
                        "step": step,
                        "result": run.results.get(step),
                    }),
                ));
            }
        }
        let completion = serde_json::json!({
            "workflow": events.workflow,
            "workflow_id": workflow_id,
            "status": "completed",
            "results": run.results,
        });
        if let Some(topic) = events.completion_topic {
            out.push(OutboundEvent::new(
                topic,
                events.workflow_completed,
                completion.clone(),
            ));
        }
        if let Some(topic) = events
            .terminal_topic
            .filter(|t| Some(*t) != events.completion_topic)
        {
            out.push(OutboundEvent::new(
                topic,
                events.workflow_completed,
                completion,
            ));
        }
        Ok(out)
    }

    fn state_keeper(&self) -> Option<&dyn StateKeeper> {
        Some(&self.store)
    }

    fn failure_event(&self, event: &InboundEvent, failure: &Failure) -> Option<OutboundEvent> {
        let events = T::EVENTS;
        let topic = events.failure_topic.or(events.completion_topic)?;
        let workflow_id = event.envelope.event_id;
        let failed_step = self.failed_at().remove(&workflow_id);
        Some(OutboundEvent::new(
            topic,
            events.workflow_failed,
            serde_json::json!({
                "workflow": events.workflow,
                "workflow_id": workflow_id,
                "status": "failed",
                "failed_step": failed_step,
                "error": failure.reason,
                "error_type": failure.error_type,
                "retry_count": failure.retry_count,
                "completed_steps": self.completed_steps(workflow_id),
            }),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::memory::InMemoryBus;
    use crate::state::StateContext;
    use serde_json::json;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    /// Two steps; `second` fails while `failures` is above zero.
    #[derive(Default)]
    struct Hooks {
        first_runs: AtomicU32,
        failures: AtomicU32,
    }

    crate::named_enum! {
        enum Two {
            First = "first",
            Second = "second",
        }
    }

    struct Table;

    impl WorkflowTable<Hooks> for Table {
        const EVENTS: WorkflowEvents = WorkflowEvents {
            workflow: "two",
            step_completed: "two.step-completed",
            workflow_completed: "two.workflow-completed",
            workflow_failed: "two.workflow-failed",
            result_topic: Some("progress"),
            completion_topic: Some("done"),
            terminal_topic: None,
            failure_topic: None,
        };
        type Step = Two;

        fn run_step<'a>(
            hooks: &'a Hooks,
            step: Two,
            _ctx: &'a HandlerContext,
            run: &'a WorkflowRun,
        ) -> StepFuture<'a> {
            Box::pin(async move {
                if step == Two::First {
                    hooks.first_runs.fetch_add(1, Ordering::SeqCst);
                    return Ok(json!(1));
                }
                let left = hooks.failures.load(Ordering::SeqCst);
                if left > 0 {
                    hooks.failures.store(left - 1, Ordering::SeqCst);
                    return Err(HandlerError::Retriable("not yet".into()));
                }
                Ok(json!({ "key": run.idempotency_key("second") }))
            })
        }
    }

    #[tokio::test]
    async fn a_retried_run_resumes_at_the_failed_step() {
        let bus = InMemoryBus::default();
        let ctx = StateContext {
            bus: Arc::new(bus),
            topic: "onex.snapshot.demo.two.v1".into(),
        };
        let node: WorkflowDriver<Table, Hooks> = WorkflowDriver::new(Hooks::default());
        node.hooks.failures.store(1, Ordering::SeqCst);
        let event = crate::testing::inbound("in", "go", json!({}));
        let keeper = node.state_keeper().unwrap();
        assert!(keeper.admit(&ctx, &event).await.unwrap());
        let error = node.handle(&crate::testing::context(), &event).await;
        assert!(matches!(error, Err(HandlerError::Retriable(m)) if m.starts_with("step second")));
        let out = node
            .handle(&crate::testing::context(), &event)
            .await
            .unwrap();
        keeper.commit(&event).await.unwrap();
        assert_eq!(node.hooks.first_runs.load(Ordering::SeqCst), 1);
        let types: Vec<&str> = out.iter().map(|e| e.event_type.as_str()).collect();
        assert_eq!(
            types,
            [
                "two.step-completed",
                "two.step-completed",
                "two.workflow-completed"
            ]
        );
        assert_eq!(
            out[1].payload["result"]["key"],
            format!("{}:second", event.envelope.event_id)
        );

        // A new process after a crash between the steps: the first is not run again.
        let fresh: WorkflowDriver<Table, Hooks> = WorkflowDriver::new(Hooks::default());
        let mut later = crate::testing::inbound("in", "go", json!({}));
        later.offset = 1;
        let keeper = fresh.state_keeper().unwrap();
        keeper.admit(&ctx, &later).await.unwrap();
        fresh
            .store
            .record_progress(
                &later,
                &later.envelope.event_id.to_string(),
                Progress {
                    results: [("first".to_string(), json!(1))].into_iter().collect(),
                },
            )
            .await
            .unwrap();
        keeper.abandon(&later);
        let restarted: WorkflowDriver<Table, Hooks> = WorkflowDriver::new(Hooks::default());
        let keeper = restarted.state_keeper().unwrap();
        assert!(keeper.admit(&ctx, &later).await.unwrap());
        restarted
            .handle(&crate::testing::context(), &later)
            .await
            .unwrap();
        assert_eq!(restarted.hooks.first_runs.load(Ordering::SeqCst), 0);
        keeper.commit(&later).await.unwrap();
    }

    /// A step's progress the bus cannot take for now (a broker outage) does
    /// not fail the run: failing it had the retry run the finished step
    /// again, and an outage outlasting the retries dead-letter the
    /// workflow. The process keeps the progress: the run completes, and
    /// handled again (its results not published), it runs no step again;
    /// the state committed with its outcome takes the progress to the bus.
    #[tokio::test]
    async fn a_step_whose_progress_the_bus_cannot_take_is_not_run_again() {
        use crate::bus::memory::MemoryBusSettings;
        use crate::bus::{EventBus, TopicPartition};
        use crate::retry::RetrySettings;

        let topic = "onex.snapshot.demo.two.v1";
        let bus = InMemoryBus::new(MemoryBusSettings {
            publish_retry: RetrySettings {
                max_retries: 0,
                ..RetrySettings::default()
            },
            ..MemoryBusSettings::default()
        });
        let ctx = StateContext {
            bus: Arc::new(bus.clone()),
            topic: topic.into(),
        };
        let node: WorkflowDriver<Table, Hooks> = WorkflowDriver::new(Hooks::default());
        let event = crate::testing::inbound("in", "go", json!({}));
        let workflow = event.envelope.event_id.to_string();
        bus.inject_transient_failures_for(topic, workflow.as_bytes(), 1);
        let keeper = node.state_keeper().unwrap();
        assert!(keeper.admit(&ctx, &event).await.unwrap());
        let out = node.handle(&crate::testing::context(), &event).await;
        assert_eq!(out.map(|o| o.len()).ok(), Some(3), "the run completes");
        // Its results could not be published: the input comes back.
        keeper.abandon(&event);
        assert!(keeper.admit(&ctx, &event).await.unwrap());
        node.handle(&crate::testing::context(), &event)
            .await
            .unwrap();
        keeper.commit(&event).await.unwrap();
        assert_eq!(node.hooks.first_runs.load(Ordering::SeqCst), 1);
        // The state committed with the outcome carries both steps, the input
        // applied.
        let written = bus
            .read_partition(TopicPartition::new(topic, 0))
            .await
            .unwrap();
        let last = written.last().expect("the state was written");
        let record: serde_json::Value = serde_json::from_slice(&last.value).unwrap();
        assert_eq!(record["applied"], json!(true));
        let steps: Vec<&String> = record["state"]["results"]
            .as_object()
            .map(|r| r.keys().collect())
            .unwrap_or_default();
        assert_eq!(steps, ["first", "second"], "{record}");
    }
}
