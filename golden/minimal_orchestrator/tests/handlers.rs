//! Tests of your handlers for node_order_fulfilment_orchestrator. onex-gen created this file once
//! and never overwrites it: change these tests as your handlers grow. (The
//! contract's own guarantees are checked in `tests/node.rs`, generated.)
//!
//! The starting tests call the node the way the runtime does, without a bus,
//! and check that the starting handlers accept the examples.

use onex_runtime::testing::{context, inbound};
use onex_runtime::NodeHandler;

use node_order_fulfilment_orchestrator::generated::node::Node;
use node_order_fulfilment_orchestrator::handlers::Handlers;

#[tokio::test]
async fn the_workflow_completes() {
    let event = inbound(
        "onex.cmd.demo.fulfil-order.v1",
        "test.start",
        serde_json::json!({ "task": "test" }),
    );
    Node::new(Handlers::new())
        .handle(&context(), &event)
        .await
        .expect("every step succeeds");
}
