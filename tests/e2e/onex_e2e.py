"""Helpers for the end-to-end tests of generated nodes on a real broker.

An outside client (kafka-python) plays the rest of the ONEX platform: it sends
envelopes to a node's subscribe topic, reads what the node publishes, reads
dead letters and committed offsets, and starts and stops the node binary (by
its PID only).
"""

import atexit
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.request
import uuid
from datetime import datetime, timezone

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

INTROSPECTION_TOPIC = "onex.evt.platform.node-introspection.v1"

# How long a single expectation may take before the test fails.
WAIT = float(os.environ.get("ONEX_E2E_WAIT_SECONDS", "30"))

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def bootstrap():
    value = os.environ.get("ONEX_TEST_KAFKA", "").strip()
    if not value:
        raise RuntimeError("ONEX_TEST_KAFKA is not set (HOST:PORT of a loopback broker)")
    return value


def bin_dir():
    value = os.environ.get("ONEX_E2E_BIN_DIR", "").strip()
    if not value:
        raise RuntimeError("ONEX_E2E_BIN_DIR is not set (folder of the built node binaries)")
    return value


def closed_port():
    """A loopback port nothing listens on (bound once, then released)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def now_rfc3339():
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def parse_rfc3339(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def envelope(event_type, payload, correlation_id=None):
    """An ONEX envelope as a client would send it: fresh ids, snake_case."""
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": event_type,
        "correlation_id": str(correlation_id or uuid.uuid4()),
        "timestamp": now_rfc3339(),
        "version": "1.0.0",
        "source": {"service": "e2e-client", "instance_id": "e2e", "node_id": "e2e-client"},
        "metadata": {},
        "payload": payload,
    }


def envelope_headers(env):
    return [
        ("content_type", b"application/json"),
        ("correlation_id", env["correlation_id"].encode()),
        ("message_id", env["event_id"].encode()),
        ("event_type", env["event_type"].encode()),
    ]


def headers_dict(record):
    return {k: (v.decode("utf-8", "replace") if v is not None else None) for k, v in record.headers or []}


def record_json(record):
    """A record as one JSON object: key, value and header values in hex,
    the headers as [name, value] pairs in the record's order."""
    return json.dumps({
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "key": None if record.key is None else record.key.hex(),
        "value": (record.value or b"").hex(),
        "headers": [[k, (v or b"").hex()] for k, v in (record.headers or [])],
    })


def decode(record):
    try:
        return json.loads(record.value)
    except (TypeError, ValueError):
        return None


class Client:
    """One producer and short-lived consumers against the broker."""

    def __init__(self, servers=None):
        self.servers = servers or bootstrap()
        self.producer = KafkaProducer(bootstrap_servers=self.servers, acks="all", linger_ms=0)

    def close(self):
        self.producer.close(timeout=5)

    def send_envelope(self, topic, env, key=None):
        value = json.dumps(env).encode()
        self.send_raw(topic, value, envelope_headers(env), key)
        return value

    def send_envelopes(self, topic, items):
        """Sends [(envelope, key)] back to back and waits for all of them
        once, so the node sees a burst it cannot keep pace with."""
        futures = [
            self.producer.send(topic, value=json.dumps(env).encode(),
                               key=key.encode() if isinstance(key, str) else key,
                               headers=envelope_headers(env))
            for env, key in items
        ]
        self.producer.flush(timeout=WAIT)
        for f in futures:
            f.get(timeout=WAIT)

    def send_raw(self, topic, value, headers=None, key=None):
        future = self.producer.send(
            topic,
            value=value,
            key=key.encode() if isinstance(key, str) else key,
            headers=headers or [],
        )
        future.get(timeout=WAIT)
        self.producer.flush(timeout=WAIT)

    def reader(self, *topics):
        return Reader(self.servers, topics)

    def committed(self, group, topic):
        """Committed offsets of `group` per partition of `topic` (None when none)."""
        consumer = KafkaConsumer(
            bootstrap_servers=self.servers, group_id=group, enable_auto_commit=False
        )
        try:
            parts = wait_partitions(consumer, topic)
            return {p: consumer.committed(TopicPartition(topic, p)) for p in sorted(parts)}
        finally:
            consumer.close(autocommit=False)

    def end_offsets(self, topic):
        consumer = KafkaConsumer(bootstrap_servers=self.servers, group_id=None)
        try:
            parts = wait_partitions(consumer, topic)
            tps = [TopicPartition(topic, p) for p in sorted(parts)]
            return {tp.partition: off for tp, off in consumer.end_offsets(tps).items()}
        finally:
            consumer.close(autocommit=False)

    def topic_exists(self, topic):
        consumer = KafkaConsumer(bootstrap_servers=self.servers, group_id=None)
        try:
            return topic in consumer.topics()
        finally:
            consumer.close(autocommit=False)


def wait_partitions(consumer, topic, timeout=WAIT):
    deadline = time.monotonic() + timeout
    while True:
        parts = consumer.partitions_for_topic(topic)
        if parts:
            return parts
        if time.monotonic() > deadline:
            raise AssertionError(f"topic {topic} does not exist on the broker after {timeout:.0f} s")
        consumer.topics()  # refreshes the metadata
        time.sleep(0.1)


class Reader:
    """Reads topics from their beginning without a consumer group and keeps
    every record seen, so expectations can be checked in any order."""

    def __init__(self, servers, topics):
        self.topics = list(topics)
        self.records = []
        self.consumer = KafkaConsumer(
            bootstrap_servers=servers, group_id=None, enable_auto_commit=False
        )
        tps = []
        for t in self.topics:
            tps += [TopicPartition(t, p) for p in sorted(wait_partitions(self.consumer, t))]
        self.tps = tps
        self.consumer.assign(tps)
        self.consumer.seek_to_beginning(*tps)

    def close(self):
        self.consumer.close(autocommit=False)

    def poll(self, timeout_ms=200):
        for _, recs in self.consumer.poll(timeout_ms=timeout_ms).items():
            self.records.extend(recs)

    def wait_for(self, predicate, what, timeout=WAIT):
        """The first record (by arrival) matching `predicate`; fails after `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            for r in self.records:
                if predicate(r):
                    return r
            if time.monotonic() > deadline:
                raise AssertionError(f"no record {what} on {self.topics} within {timeout:.0f} s "
                                     f"({len(self.records)} records seen)")
            self.poll()

    def wait_all(self, predicate, count, what, timeout=WAIT):
        deadline = time.monotonic() + timeout
        while True:
            found = [r for r in self.records if predicate(r)]
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(found)} of {count} records {what} on {self.topics} "
                                     f"within {timeout:.0f} s")
            self.poll()

    def drain(self, timeout=WAIT):
        """Reads up to the current end of every assigned partition."""
        ends = self.consumer.end_offsets(self.tps)
        deadline = time.monotonic() + timeout
        while any(self.consumer.position(tp) < end for tp, end in ends.items()):
            if time.monotonic() > deadline:
                raise AssertionError(f"could not read {self.topics} to their end within {timeout:.0f} s")
            self.poll()
        return self.records


def correlated(correlation_id):
    cid = str(correlation_id)

    def match(record):
        env = decode(record)
        return isinstance(env, dict) and env.get("correlation_id") == cid

    return match


def dead_letter_of(correlation_id):
    cid = str(correlation_id)
    return lambda r: headers_dict(r).get("correlation_id") == cid


_STARTED = []


@atexit.register
def _stop_leftovers():
    """Nodes still running when the tests end (an aborted run): SIGKILL by PID."""
    for node in _STARTED:
        if node.proc.poll() is None:
            os.kill(node.pid, signal.SIGKILL)
            node.proc.wait(timeout=10)


class NodeProcess:
    """A node binary started by the test; stopped only through its own PID."""

    def __init__(self, binary, env, args=(), log_path=None, inherit_env=True):
        self.binary = binary
        self.lines = []
        self.log_path = log_path
        if inherit_env:
            full_env = dict(os.environ)
        else:
            full_env = {k: os.environ[k] for k in ("PATH", "HOME", "TMPDIR") if k in os.environ}
        full_env.update(env)
        self.proc = subprocess.Popen(
            [binary, *args],
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self.pid = self.proc.pid
        _STARTED.append(self)
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self):
        log = open(self.log_path, "a", encoding="utf-8") if self.log_path else None
        try:
            for raw in self.proc.stderr:
                line = ANSI.sub("", raw.decode("utf-8", "replace")).rstrip("\n")
                self.lines.append(line)
                if log:
                    log.write(line + "\n")
                    log.flush()
        finally:
            if log:
                log.close()

    def wait_line(self, pattern, timeout=WAIT):
        """The first match of `pattern` in the node's log."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            for line in list(self.lines):
                m = rx.search(line)
                if m:
                    return m
            if self.proc.poll() is not None:
                raise AssertionError(f"node exited ({self.proc.returncode}) before logging /{pattern}/\n"
                                     + self.tail())
            if time.monotonic() > deadline:
                raise AssertionError(f"node did not log /{pattern}/ within {timeout:.0f} s\n" + self.tail())
            time.sleep(0.05)

    def health_url(self, path="/health"):
        m = self.wait_line(r"health endpoint listening.*\baddr=(\S+)")
        return f"http://{m.group(1)}{path}"

    def tail(self, n=25):
        return "\n".join("    " + line for line in self.lines[-n:])

    def terminate(self, timeout=10.0):
        """SIGTERM; the exit code, or None if it did not exit within `timeout`."""
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self):
        """Last resort for a node that ignored SIGTERM (this PID only)."""
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        self._thread.join(timeout=5)


def get_json(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.status, json.loads(resp.read().decode())


def tansu_binary():
    """The tansu broker binary, or None: $TANSU_BIN, then the usual install places."""
    for candidate in (
        os.environ.get("TANSU_BIN", ""),
        os.path.expanduser("~/.cache/onex-gen/tansu-0.6.0/bin/tansu"),
    ):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


class Broker:
    """A tansu broker of the test's own on a given loopback port, in memory."""

    def __init__(self, binary, port, workdir):
        os.makedirs(workdir, exist_ok=True)
        url = f"tcp://127.0.0.1:{port}"
        self.address = f"127.0.0.1:{port}"
        self.log = open(os.path.join(workdir, "broker.log"), "wb")
        self.proc = subprocess.Popen(
            [binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/"],
            cwd=workdir, stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
        )
        self.pid = self.proc.pid
        deadline = time.monotonic() + WAIT
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise AssertionError(f"tansu did not start on port {port}")
                time.sleep(0.1)

    def stop(self):
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.log.close()


def get_text(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.read().decode()


def wait_health(url, predicate, what, timeout=WAIT):
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            status, doc = get_json(url)
            last = (status, doc)
            if predicate(status, doc):
                return status, doc
        except (OSError, ValueError) as e:
            last = repr(e)
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} never reported {what} within {timeout:.0f} s; last: {last}")
        time.sleep(0.1)
