//! Tests of your handlers for node_order_status_reducer. onex-gen created this file once
//! and never overwrites it: change these tests as your handlers grow. (The
//! contract's own guarantees are checked in `tests/node.rs`, generated.)
//!
//! The starting tests call the node the way the runtime does, without a bus,
//! and check that the starting handlers accept the examples.

use onex_runtime::testing::{context, inbound};
use onex_runtime::NodeHandler;

use node_order_status_reducer::generated::node::Node;
use node_order_status_reducer::handlers::Handlers;

#[tokio::test]
async fn the_first_transition_is_taken() {
    let node = Node::new(Handlers::new());
    let event = inbound(
        "onex.evt.demo.order-events.v1",
        "payment_captured",
        serde_json::json!({ "aggregate_id": "a-1" }),
    );
    node.handle(&context(), &event)
        .await
        .expect("a declared transition");
    assert_eq!(node.state_of("a-1").as_str(), "paid");
}
