//! Per-aggregate state for reducer nodes.
//!
//! A reducer keeps one state per aggregate key within an aggregation window:
//! an aggregate not touched for longer than the window is forgotten, so a
//! long-running node does not grow without bound. The window comes from
//! `ONEX_AGGREGATION_WINDOW_SECONDS` (default one hour).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::node::InboundEvent;

/// Default aggregation window.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(3600);

/// States keyed by aggregate, each forgotten after the window passes untouched.
#[derive(Debug)]
pub struct AggregateStore<S> {
    window: Duration,
    entries: Mutex<HashMap<String, (S, Instant)>>,
}

impl<S: Clone> AggregateStore<S> {
    /// A store with the given window.
    pub fn new(window: Duration) -> Self {
        AggregateStore {
            window,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// A store whose window is `ONEX_AGGREGATION_WINDOW_SECONDS`, else [`DEFAULT_WINDOW`].
    pub fn from_env() -> Self {
        let window = crate::config::ConfigSource::from_env()
            .get("ONEX_AGGREGATION_WINDOW_SECONDS")
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s > 0.0)
            .map(Duration::from_secs_f64)
            .unwrap_or(DEFAULT_WINDOW);
        Self::new(window)
    }

    /// The aggregate's state, unless it has none or it expired.
    pub fn get(&self, key: &str) -> Option<S> {
        let mut entries = self.lock();
        match entries.get(key) {
            Some((_, touched)) if touched.elapsed() > self.window => {
                entries.remove(key);
                None
            }
            Some((state, _)) => Some(state.clone()),
            None => None,
        }
    }

    /// Records the aggregate's new state, and forgets expired aggregates.
    pub fn set(&self, key: &str, state: S) {
        let now = Instant::now();
        let mut entries = self.lock();
        entries.retain(|_, (_, touched)| now.duration_since(*touched) <= self.window);
        entries.insert(key.to_owned(), (state, now));
    }

    /// How many aggregates are held.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no aggregate is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (S, Instant)>> {
        // A panic while holding the lock cannot leave a map half-updated.
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The aggregate an event belongs to: the message key, else the payload's
/// `aggregate_id`, else the correlation id.
pub fn aggregate_key(event: &InboundEvent) -> String {
    if let Some(key) = event
        .key
        .as_deref()
        .and_then(|k| std::str::from_utf8(k).ok())
    {
        return key.to_owned();
    }
    match event
        .envelope
        .payload
        .get("aggregate_id")
        .and_then(serde_json::Value::as_str)
    {
        Some(id) => id.to_owned(),
        None => event.envelope.correlation_id.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_are_kept_per_key() {
        let store = AggregateStore::new(Duration::from_secs(60));
        store.set("a", 1);
        store.set("b", 2);
        assert_eq!(store.get("a"), Some(1));
        assert_eq!(store.get("b"), Some(2));
        assert_eq!(store.get("c"), None);
        store.set("a", 3);
        assert_eq!(store.get("a"), Some(3));
        assert_eq!(store.len(), 2);
    }

    #[test]
    fn aggregates_expire_after_the_window() {
        let store = AggregateStore::new(Duration::from_millis(20));
        store.set("a", 1);
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(store.get("a"), None);
        store.set("b", 2);
        assert!(store.len() == 1);
    }
}
