//! Tests of your handlers for reducer_metrics_aggregator. onex-gen created this file once
//! and never overwrites it: change these tests as your handlers grow. (The
//! contract's own guarantees are checked in `tests/node.rs`, generated.)
//!
//! The starting tests call the node the way the runtime does, without a bus,
//! and check that the starting handlers accept the examples.

use onex_runtime::testing::{context, inbound};
use onex_runtime::NodeHandler;

use reducer_metrics_aggregator::generated::node::Node;
use reducer_metrics_aggregator::handlers::Handlers;

#[tokio::test]
async fn the_first_transition_is_taken() {
    let node = Node::new(Handlers::new());
    let event = inbound(
        "onex.cmd.reducer-metrics-aggregator.reducer-metrics-aggregator.v1",
        "collect_metrics",
        serde_json::json!({ "aggregate_id": "a-1" }),
    );
    node.handle(&context(), &event)
        .await
        .expect("a declared transition");
    assert_eq!(node.state_of("a-1").as_str(), "collecting");
}
