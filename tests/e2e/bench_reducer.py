"""Reducer throughput with durable state on and off, on the same broker.

    ONEX_TEST_KAFKA=HOST:PORT python tests/e2e/bench_reducer.py BINARY [N]

BINARY is the reducer built from contracts/minimal_reducer.yaml (scripts/e2e.sh
builds it into target/nodes/debug/node-order-status-reducer; build it with
--release for figures worth comparing). For each setting of
ONEX_DURABLE_STATE the node starts on its own topics (a fresh topic prefix),
N `payment_captured` events for N orders are put on its input topic, and
the time from the first to the N-th state change read back is measured.
Prints one line per setting: events per second.
"""

import json
import os
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from onex_e2e import Client, NodeProcess, bootstrap, decode, envelope  # noqa: E402

SUBSCRIBE = "onex.evt.demo.order-events.v1"
STATUS = "onex.evt.demo.order-status-changed.v1"


def run(binary, n, durable):
    prefix = f"bench-{uuid.uuid4().hex[:8]}."
    node = NodeProcess(binary, {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap(),
        "KAFKA_TOPIC_PREFIX": prefix,
        "KAFKA_AUTO_OFFSET_RESET": "earliest",
        "ONEX_DURABLE_STATE": "true" if durable else "false",
        "ONEX_HEALTH_ADDR": "127.0.0.1:0",
        "ONEX_HEALTH_PORT": "0",
        "ONEX_HEARTBEAT_INTERVAL_SECONDS": "0",
        "RUST_LOG": "warn,onex_runtime::service=info",
        "NO_COLOR": "1",
    })
    client = Client()
    try:
        node.wait_line(r"node running", timeout=60)
        for i in range(n):
            order = f"order-{i}"
            env = envelope("demo.order.payment_captured", {"aggregate_id": order, "amount": 1})
            client.producer.send(prefix + SUBSCRIBE, value=json.dumps(env).encode(),
                                 key=order.encode())
        client.producer.flush()
        reader = client.reader(prefix + STATUS)
        first = None
        seen = set()
        deadline = time.monotonic() + 600
        while len(seen) < n:
            if time.monotonic() > deadline:
                raise SystemExit(f"only {len(seen)} of {n} state changes within 600 s")
            before = len(reader.records)
            reader.poll(timeout_ms=100)
            for r in reader.records[before:]:
                env = decode(r)
                if first is None:
                    first = time.monotonic()
                seen.add(env["event_id"])
        elapsed = time.monotonic() - first
        reader.close()
        return (n - 1) / elapsed if elapsed > 0 else float("inf")
    finally:
        node.terminate(timeout=10) or node.kill()
        client.close()


def main(argv):
    binary = argv[0]
    n = int(argv[1]) if len(argv) > 1 else 2000
    for durable in (False, True):
        rate = run(binary, n, durable)
        print(f"ONEX_DURABLE_STATE={'true' if durable else 'false'}: {n} inputs, {rate:.0f} events/s")


if __name__ == "__main__":
    main(sys.argv[1:])
