//! Tests of your handlers for node_pricing_effect. onex-gen created this file once
//! and never overwrites it: change these tests as your handlers grow. (The
//! contract's own guarantees are checked in `tests/node.rs`, generated.)
//!
//! The starting tests call the node the way the runtime does, without a bus,
//! and check that the starting handlers accept the examples.

use onex_runtime::testing::{context, inbound};
use onex_runtime::NodeHandler;

#[allow(unused_imports)]
use node_pricing_effect::generated::models::*;
use node_pricing_effect::generated::node::Node;
use node_pricing_effect::handlers::Handlers;

#[tokio::test]
async fn quote_accepts_the_example() {
    let input = serde_json::to_value(QuoteInput {
        order_id: "example".to_owned(),
        items: Vec::new(),
    })
    .expect("the example input serialises");
    let event = inbound("onex.cmd.demo.node-pricing-effect.v1", "quote", input);
    let events = Node::new(Handlers::new())
        .handle(&context(), &event)
        .await
        .expect("the handler succeeds");
    assert!(events.len() <= 1, "{events:?}");
}
