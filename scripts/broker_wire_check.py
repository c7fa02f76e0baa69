"""Reads back, with kafka-python, a message the runtime published, and checks
its key, envelope and headers. Usage: broker_wire_check.py BOOTSTRAP PUBLISHED_JSON"""
import json
import sys

from kafka import KafkaConsumer, TopicPartition


def main() -> int:
    bootstrap, published_path = sys.argv[1], sys.argv[2]
    with open(published_path) as f:
        published = json.load(f)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, consumer_timeout_ms=15000,
                             enable_auto_commit=False)
    tp = TopicPartition(published["topic"], published["partition"])
    consumer.assign([tp])
    consumer.seek(tp, published["offset"])
    for record in consumer:
        if record.offset != published["offset"]:
            continue
        envelope = json.loads(record.value)
        headers = {k: v.decode() for k, v in record.headers}
        checks = {
            "key": record.key == b"wire-key",
            "event_id": envelope["event_id"] == published["event_id"],
            "payload": envelope["payload"] == {"hello": "wire"},
            "correlation header": headers.get("correlation_id") == published["correlation_id"],
            "message_id header": headers.get("message_id") == published["event_id"],
            "content_type header": headers.get("content_type") == "application/json",
            "event_type header": headers.get("event_type") == "wire.checked",
            "priority header": headers.get("priority") == "high",
        }
        failed = [name for name, ok in checks.items() if not ok]
        if failed:
            print(f"wire check FAILED: {failed}; headers={headers}", file=sys.stderr)
            return 1
        print(f"wire check: {len(checks)} passed, 0 failed")
        return 0
    print("wire check FAILED: message not found", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
