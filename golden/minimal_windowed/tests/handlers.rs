//! Tests of your handlers for node_customer_totals_reducer. onex-gen created this file once
//! and never overwrites it: change these tests as your handlers grow. (The
//! contract's own guarantees are checked in `tests/node.rs`, generated.)
//!
//! The starting tests call the node the way the runtime does, without a bus,
//! and check that the starting handlers accept the examples.

use onex_runtime::testing::{context, inbound};
use onex_runtime::NodeHandler;

use node_customer_totals_reducer::generated::node::Node;
use node_customer_totals_reducer::handlers::Handlers;

#[tokio::test]
async fn state_is_kept_per_aggregate() {
    let node = Node::new(Handlers::new());
    for _ in 0..2 {
        let event = inbound(
            "onex.evt.demo.order-placed.v1",
            "test.event",
            serde_json::json!({ "aggregate_id": "a-1" }),
        );
        node.handle(&context(), &event)
            .await
            .expect("the reducer succeeds");
    }
    assert_eq!(node.state_of("a-1")["events"], 2);
    assert!(node.state_of("a-2").is_null());
}
