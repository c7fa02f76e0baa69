//! Tests of your handlers for node_checkout_orchestrator. onex-gen created this file once
//! and never overwrites it: change these tests as your handlers grow. (The
//! contract's own guarantees are checked in `tests/node.rs`, generated.)
//!
//! The starting tests call the node the way the runtime does, without a bus,
//! and check that the starting handlers accept the examples.

use onex_runtime::testing::{inbound, Answering};
use onex_runtime::NodeHandler;

use node_checkout_orchestrator::generated::node::Node;
use node_checkout_orchestrator::handlers::Handlers;

/// The effect nodes the steps call are stood in for by fixed answers.
#[tokio::test]
async fn the_workflow_completes() {
    let event = inbound(
        "onex.cmd.demo.checkout.v1",
        "test.start",
        serde_json::json!({ "task": "test" }),
    );
    let effects = Answering::new(&[(
        "onex.cmd.demo.node-pricing-effect.v1",
        serde_json::json!({ "answered": "quote_price" }),
    )])
    .await;
    Node::new(Handlers::new())
        .handle(&effects.context(&event), &event)
        .await
        .expect("every step succeeds");
}
