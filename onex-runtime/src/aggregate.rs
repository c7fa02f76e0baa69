//! Which aggregate an event belongs to. Reducers keep one state per
//! aggregate (see [`crate::reducer`]).

use crate::node::InboundEvent;

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
    use serde_json::json;

    #[test]
    fn the_key_comes_first_then_the_payload_then_the_correlation() {
        let mut e = crate::testing::inbound("t", "x", json!({ "aggregate_id": "a-1" }));
        assert_eq!(aggregate_key(&e), "a-1");
        e.key = Some(b"k".to_vec());
        assert_eq!(aggregate_key(&e), "k");
        let bare = crate::testing::inbound("t", "x", json!({}));
        assert_eq!(
            aggregate_key(&bare),
            bare.envelope.correlation_id.to_string()
        );
    }
}
