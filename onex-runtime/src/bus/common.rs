//! What every backend does the same way: refusing use once closed, the
//! publish path (topic check, circuit breaker, retries), the bookkeeping of
//! running subscriptions and their consumer tasks, and stopping them all
//! on close.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use super::{resilient_publish, AttemptError, BusError, Membership, PublishReceipt, Subscription};
use crate::breaker::{CircuitBreaker, CircuitBreakerSettings};
use crate::headers::Headers;
use crate::metrics::Metrics;
use crate::retry::RetrySettings;
use crate::topic::validate_topic_name;

/// The state a backend shares with every other: breaker, counters, the
/// closed flag and the running subscriptions.
pub(crate) struct BusCore {
    /// The publish circuit breaker.
    pub(crate) breaker: CircuitBreaker,
    /// The counters the bus updates.
    pub(crate) metrics: Arc<Metrics>,
    publish_retry: RetrySettings,
    closed: AtomicBool,
    /// Topic, group and stop signal of each subscription started.
    subscribers: Mutex<Vec<(String, String, watch::Sender<bool>)>>,
    tasks: TaskGroup,
}

impl BusCore {
    pub(crate) fn new(
        breaker: CircuitBreakerSettings,
        publish_retry: RetrySettings,
        metrics: Arc<Metrics>,
    ) -> Self {
        BusCore {
            breaker: CircuitBreaker::new(breaker),
            metrics,
            publish_retry,
            closed: AtomicBool::new(false),
            subscribers: Mutex::new(Vec::new()),
            tasks: TaskGroup::new(),
        }
    }

    /// Whether [`BusCore::mark_closed`] was called.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// [`BusError::Closed`] once the bus is closed.
    pub(crate) fn check_open(&self) -> Result<(), BusError> {
        if self.is_closed() {
            return Err(BusError::Closed);
        }
        Ok(())
    }

    /// Publishes to `topic` with `attempt`, under the breaker and with
    /// retries, unless the bus is closed or the topic name is invalid.
    pub(crate) async fn publish<F, Fut>(
        &self,
        topic: &str,
        headers: &Headers,
        attempt: F,
    ) -> Result<PublishReceipt, BusError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<PublishReceipt, AttemptError>>,
    {
        self.check_open()?;
        validate_topic_name(topic)?;
        resilient_publish(
            topic,
            headers.correlation_id,
            &self.breaker,
            &self.publish_retry,
            &self.metrics,
            attempt,
        )
        .await
    }

    /// Starts a subscription of `member` if the bus admits it (it is open
    /// and the topic name valid): `start`, given the subscription's stop
    /// signal, makes the consumer task, which runs counted until it
    /// returns. Nothing of the consumer is made for a subscription the bus
    /// refuses.
    pub(crate) fn subscribe<F, Fut>(
        &self,
        member: Membership<'_>,
        start: F,
    ) -> Result<Subscription, BusError>
    where
        F: FnOnce(watch::Receiver<bool>) -> Result<Fut, BusError>,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.check_open()?;
        validate_topic_name(member.topic)?;
        let guard = self.tasks.guard().ok_or(BusError::Closed)?;
        let (stop_tx, stop) = watch::channel(false);
        let running = start(stop)?;
        let task = tokio::spawn(async move {
            let _guard = guard;
            running.await;
        });
        let (topic, group) = (member.topic.to_string(), member.group.to_string());
        self.subscribers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((topic.clone(), group.clone(), stop_tx.clone()));
        Ok(Subscription::new(topic, group, stop_tx, task))
    }

    /// Subscriptions neither stopped nor dropped, optionally only those
    /// of `topic`.
    pub(crate) fn running_subscriptions(&self, topic: Option<&str>) -> usize {
        let mut subs = self.subscribers.lock().unwrap_or_else(|p| p.into_inner());
        subs.retain(|(_, _, stop)| !*stop.borrow() && !stop.is_closed());
        subs.iter()
            .filter(|(t, _, _)| topic.map_or(true, |x| x == t))
            .count()
    }

    /// Refuses further use; returns whether the bus was closed already.
    pub(crate) fn mark_closed(&self) -> bool {
        self.closed.swap(true, Ordering::SeqCst)
    }

    /// Stops every subscription and waits until every consumer task has
    /// finished (in-flight messages handled, offsets committed); no task
    /// starts afterwards.
    pub(crate) async fn stop_subscriptions(&self) {
        let subs = std::mem::take(&mut *self.subscribers.lock().unwrap_or_else(|p| p.into_inner()));
        for (_, _, stop) in subs {
            let _ = stop.send(true);
        }
        self.tasks.close_and_wait().await;
    }
}

/// Tracks running consumer tasks so that closing a bus can wait for them.
#[derive(Debug)]
struct TaskGroup {
    tx: Mutex<Option<tokio::sync::mpsc::Sender<()>>>,
    rx: tokio::sync::Mutex<tokio::sync::mpsc::Receiver<()>>,
}

/// Held by a running task; the task counts as finished when it is dropped.
pub(crate) type TaskGuard = tokio::sync::mpsc::Sender<()>;

impl TaskGroup {
    fn new() -> Self {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        TaskGroup {
            tx: Mutex::new(Some(tx)),
            rx: tokio::sync::Mutex::new(rx),
        }
    }

    /// A guard for a new task, or `None` once the group is closing.
    fn guard(&self) -> Option<TaskGuard> {
        self.tx.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Refuses new tasks and waits until every guard is dropped.
    async fn close_and_wait(&self) {
        self.tx.lock().unwrap_or_else(|p| p.into_inner()).take();
        // Nobody sends; `recv` returns `None` once every sender is gone.
        let _ = self.rx.lock().await.recv().await;
    }
}
