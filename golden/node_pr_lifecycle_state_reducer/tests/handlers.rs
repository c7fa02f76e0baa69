//! Tests of your handlers for node_pr_lifecycle_state_reducer. onex-gen created this file once
//! and never overwrites it: change these tests as your handlers grow. (The
//! contract's own guarantees are checked in `tests/node.rs`, generated.)
//!
//! The starting tests call the node the way the runtime does, without a bus,
//! and check that the starting handlers accept the examples.

use onex_runtime::testing::{context, inbound};
use onex_runtime::NodeHandler;

use node_pr_lifecycle_state_reducer::generated::node::Node;
use node_pr_lifecycle_state_reducer::handlers::Handlers;

#[tokio::test]
async fn the_first_transition_is_taken() {
    let node = Node::new(Handlers::new());
    let event = inbound(
        "onex.cmd.omnimarket.pr-lifecycle-sweep-start.v1",
        "start_received",
        serde_json::json!({ "aggregate_id": "a-1" }),
    );
    node.handle(&context(), &event)
        .await
        .expect("a declared transition");
    assert_eq!(node.state_of("a-1").as_str(), "inventorying");
}
