"""End to end: each of the four minimal contracts of a node kind, generated
and built, runs against a real Kafka-protocol broker and is checked from the
outside with kafka-python; so does the reducer with an aggregation window
(WindowedNode, its own scenarios only), and an orchestrator whose step calls
an effect node over request/response (RequestWorkflow, both nodes running).

Per node kind, in order (the tests of one class share one node's history):
 1. the node starts and publishes its start-up introspection event, and has
    created its topics;
 2. an input envelope produces the output / state-change / completion events
    with the same correlation id and causation id = the input's event id;
 3. a message that is not JSON lands on the dead-letter topic, byte for byte,
    with its failure context;
 4. a kind-specific poison (undecodable payload, undeclared FSM transition,
    not an envelope) lands there too;
 5. SIGTERM: exit 0 within 10 s, a shutdown introspection event, and the
    group's committed offsets cover everything consumed;
 6. a restarted node handles new input but nothing it already handled;
 7. with no broker the node runs degraded on the in-memory bus and /health
    says so (the effect node also: a broker that appears later is joined,
    and a broker outage shorter than the consumer session is ridden out);
 8. `--introspect` prints the introspection document and exits without
    opening a connection to the bus.
Besides: introspection heartbeats and answers to introspection requests,
/health and /metrics of a node on Kafka, and per kind the behaviour of user
code (tests/e2e/handlers/<kind>.rs, copied over the generated
src/handlers.rs by scripts/e2e.sh): the contract's environment variable and
retry policy (effect), a real result (compute), a guard (reducer), a failing
step that stops the workflow (orchestrator).

Environment: ONEX_TEST_KAFKA (bootstrap HOST:PORT), ONEX_E2E_BIN_DIR (folder
of the built node binaries), optionally ONEX_E2E_LOG_DIR (node logs).
"""

import base64
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import uuid
from datetime import datetime, timedelta, timezone

from onex_e2e import (
    INTROSPECTION_TOPIC,
    Client,
    NodeProcess,
    bin_dir,
    bootstrap,
    closed_port,
    get_text,
    correlated,
    dead_letter_of,
    decode,
    envelope,
    headers_dict,
    parse_rfc3339,
    tansu_binary,
    Broker,
    wait_health,
)


def original_value(record):
    """The original record's value inside a dead-letter document (exact
    bytes when they are not UTF-8), or None for anything else."""
    try:
        original = json.loads(record.value)["original_message"]
    except (ValueError, KeyError, TypeError):
        return None
    exact = original.get("value_base64")
    return base64.b64decode(exact) if exact else (original.get("value") or "").encode("utf-8")


def outputs_by_input(reader, cids):
    """The envelopes `reader` has read so far whose correlation id is in
    `cids`, by correlation id, in the order read."""
    by_input = {}
    for r in reader.records:
        out = decode(r) or {}
        if out.get("correlation_id") in cids:
            by_input.setdefault(out["correlation_id"], []).append(out)
    return by_input


def node_env(instance):
    """What every node of these tests is started with."""
    return {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap(),
        "KAFKA_AUTO_OFFSET_RESET": "earliest",
        "KAFKA_TIMEOUT_SECONDS": "15",
        "ONEX_HEALTH_ADDR": "127.0.0.1:0",
        "ONEX_HEALTH_PORT": "0",
        "ONEX_INSTANCE_ID": instance,
        "ONEX_BUS_CONNECT_TIMEOUT_SECONDS": "10",
        "RUST_LOG": "info",
        "NO_COLOR": "1",
    }


class BrokerOutages:
    """Running a node on a broker of its own and stopping that broker; the
    class provides `start_node(env)`, which returns the started node with its
    instance id in `instance`."""

    # Settings under which a publish fails during a broker outage of a few
    # seconds: it gives up after 1 s, with no retry, and the circuit stays
    # closed (the 7c tests).
    SHORT_PUBLISHES = {
        "KAFKA_TIMEOUT_SECONDS": "1",
        "KAFKA_MAX_RETRY_ATTEMPTS": "0",
        "KAFKA_CIRCUIT_BREAKER_THRESHOLD": "100",
    }

    @contextlib.contextmanager
    def node_on_a_broker_of_its_own(self, name, session_s, env, instance=None):
        """Starts a tansu of its own (its folder named after `name`) and a
        node on it with `env` and a consumer session of `session_s`, under
        the instance id `instance` when given; yields (broker, client, node)
        once the node's start-up introspection is on that broker, and stops
        the three afterwards."""
        tansu = tansu_binary()
        if tansu is None:
            self.skipTest("no tansu binary (set TANSU_BIN)")
        port = closed_port()
        workdir = os.path.join(os.environ.get("ONEX_E2E_LOG_DIR") or "/tmp", f"{name}-{port}")
        broker = Broker(tansu, port, workdir)
        client = node = None
        try:
            client = Client(broker.address)
            env = {
                **(durable_env(instance) if instance else {}),
                **env,
                "KAFKA_BOOTSTRAP_SERVERS": broker.address,
                "KAFKA_SESSION_TIMEOUT_MS": str(session_s * 1000),
            }
            node = self.start_node(env)
            if instance:
                node.instance = instance
            # The node creates its topics as it starts.
            intro = client.reader(INTROSPECTION_TOPIC)
            intro.wait_for(lambda r: (decode(r) or {}).get("payload", {}).get("capabilities", {})
                           .get("metadata", {}).get("instance_id") == node.instance,
                           "start-up introspection on the test's broker")
            intro.close()
            yield broker, client, node
        finally:
            if client is not None:
                client.close()
            if node is not None and node.proc.poll() is None:
                node.kill()
            broker.stop()

    @staticmethod
    def pause(broker, seconds):
        """The broker stops answering (SIGSTOP) for `seconds`, then goes on."""
        os.kill(broker.pid, signal.SIGSTOP)
        try:
            time.sleep(seconds)
        finally:
            os.kill(broker.pid, signal.SIGCONT)

    def redeliveries(self, node, at_least=0):
        """How often the node left an input unacknowledged, to be delivered
        again; fails below `at_least` (the fault a test is about did not
        happen)."""
        count = sum(1 for line in node.lines
                    if "message not acknowledged" in line and "delivered again" in line)
        self.assertGreaterEqual(count, at_least, "no input was delivered again: nothing tested\n"
                                + node.tail())
        return count

    def healthy_on_kafka(self, node):
        status, doc = wait_health(node.health_url(), lambda s, d: d.get("status") == "healthy",
                                  "healthy after the outage", timeout=60)
        self.assertEqual((status, doc["bus"], doc["degraded"]), (200, "kafka", False), doc)


class NodeE2E(BrokerOutages):
    """The checks shared by every kind; subclasses describe their node."""

    NODE = ""  # binary and node name
    KIND = ""
    GROUP = ""
    SUBSCRIBE = ""
    PUBLISH = []
    DLQ = ""
    ENV_VARS = []  # contract environment variables
    EXTRA_ENV = {}  # set for every start of this node

    # -- kind-specific parts -------------------------------------------------

    def send_input(self):
        """Sends one valid input; returns [(envelope, expected output count)]."""
        raise NotImplementedError

    def check_outputs(self, env, outputs):
        """Checks the events published for input `env` (all share its correlation id)."""
        raise NotImplementedError

    def send_bad_payload(self):
        """Sends a kind-specific poison; returns (envelope or None, correlation id,
        raw value, expected error type, text expected in the reason)."""
        raise NotImplementedError

    def start_in_flight(self, node):
        """Sends input that is still being handled when SIGTERM comes; returns
        [(envelope, expected output count)]. Only kinds with slow user code."""
        return []

    # -- shared machinery ----------------------------------------------------

    @classmethod
    def setUpClass(cls):
        cls.client = Client()
        cls.state = {"handled": [], "dead": []}
        cls.nodes = []
        cls.readers = {}
        cls.log_dir = os.environ.get("ONEX_E2E_LOG_DIR") or None
        cls.first = cls.start_node()

    @classmethod
    def tearDownClass(cls):
        for node in cls.nodes:
            if node.proc.poll() is None:
                if node.terminate(timeout=10) is None:
                    node.kill()
        for r in cls.readers.values():
            r.close()
        cls.client.close()

    @classmethod
    def start_node(cls, extra_env=None, args=()):
        instance = f"e2e-{cls.KIND}-{uuid.uuid4()}"
        env = {**node_env(instance), "ONEX_HEARTBEAT_INTERVAL_SECONDS": "1", **cls.EXTRA_ENV}
        env.update(extra_env or {})
        log = os.path.join(cls.log_dir, f"{cls.NODE}.log") if cls.log_dir else None
        node = NodeProcess(cls.binary(), env, args, log)
        node.instance = instance
        cls.nodes.append(node)
        return node

    @classmethod
    def stop_running_nodes(cls):
        """Never two members of one group at once: tansu 0.6.0 then leaves the
        group unable to assign partitions to any later member (seen with plain
        kafka-python consumers too), which would spoil later runs on the broker."""
        for node in cls.nodes:
            if node.proc.poll() is None and node.terminate(timeout=10) is None:
                node.kill()

    @classmethod
    def binary(cls):
        """The built binary: cargo names it after the crate (`node-echo-effect`)."""
        return os.path.join(bin_dir(), cls.NODE.replace("_", "-"))

    @classmethod
    def reader(cls, *topics):
        key = tuple(topics)
        if key not in cls.readers:
            cls.readers[key] = cls.client.reader(*topics)
        return cls.readers[key]

    def introspection_of(self, node, reason, correlation_id=None):
        def match(r):
            env = decode(r)
            if not isinstance(env, dict) or env.get("event_type") != "node-introspection":
                return False
            if correlation_id is not None and env.get("correlation_id") != correlation_id:
                return False
            p = env.get("payload") or {}
            meta = (p.get("capabilities") or {}).get("metadata") or {}
            return meta.get("instance_id") == node.instance and p.get("reason") == reason

        r = self.reader(INTROSPECTION_TOPIC).wait_for(match, f"{reason} introspection of {node.instance}")
        return decode(r)

    def wait_started(self, node):
        """The start-up introspection event: the node is subscribed and running."""
        try:
            return self.introspection_of(node, "startup")
        except AssertionError as e:
            raise AssertionError(f"{e}\nnode log:\n{node.tail()}") from None

    def outputs_of(self, correlation_id, count):
        reader = self.reader(*self.PUBLISH)
        return [decode(r) for r in reader.wait_all(correlated(correlation_id), count,
                                                    f"with correlation id {correlation_id}")]

    def dead_letter(self, correlation_id):
        return self.reader(self.DLQ).wait_for(dead_letter_of(correlation_id),
                                              f"dead letter with correlation id {correlation_id}")

    def check_dead_letter(self, record, raw, correlation_id, error_type, reason_text, retries=0):
        h = headers_dict(record)
        # The value is the dead-letter document the ONEX services write.
        doc = json.loads(record.value)
        self.assertEqual(doc["original_topic"], self.SUBSCRIBE)
        original = doc["original_message"]
        self.assertEqual(original_value(record), raw, "the dead letter holds the original record, byte for byte")
        self.assertIsInstance(original["offset"], int)
        self.assertIsInstance(original["partition"], int)
        self.assertEqual(doc["correlation_id"], str(correlation_id))
        self.assertEqual(doc["error_type"], error_type)
        self.assertIn(reason_text, doc["failure_reason"])
        self.assertEqual(doc["retry_count"], retries)
        self.assertEqual(parse_rfc3339(doc["failure_timestamp"]), parse_rfc3339(h["dlq_failed_at"]))
        self.assertEqual(h.get("correlation_id"), str(correlation_id))
        self.assertEqual(h.get("dlq_error_type"), error_type, h)
        self.assertIn(reason_text, h.get("dlq_reason", ""), h)
        self.assertEqual(h.get("dlq_retry_count"), str(retries), h)
        self.assertEqual(h.get("retry_count"), str(retries), h)
        self.assertEqual(h.get("dlq_original_topic"), self.SUBSCRIBE)
        self.assertEqual(h.get("dlq_consumer_group"), self.GROUP)
        self.assertEqual(h.get("dlq_node"), self.NODE)
        self.assertRegex(h.get("dlq_original_offset", ""), r"^\d+$")
        failed_at = parse_rfc3339(h["dlq_failed_at"])
        age = datetime.now(timezone.utc) - failed_at
        self.assertTrue(timedelta(seconds=-5) < age < timedelta(minutes=5), f"dlq_failed_at {failed_at}")

    # -- the tests -----------------------------------------------------------

    def test_1_introspection_on_start(self):
        env = self.wait_started(self.first)
        p = env["payload"]
        self.assertEqual(p["node_name"], self.NODE)
        self.assertEqual(p["node_type"], self.KIND)
        self.assertEqual(p["reason"], "startup")
        self.assertEqual(p["current_state"], "running")
        meta = p["capabilities"]["metadata"]
        self.assertEqual(meta["subscribe_topics"], [self.SUBSCRIBE])
        self.assertEqual(sorted(meta["publish_topics"]), sorted(self.PUBLISH))
        self.assertEqual(meta["consumer_group"], self.GROUP)
        self.assertEqual(env["source"]["service"], self.NODE)
        # The node created every topic it uses (the broker does not auto-create).
        for topic in [self.SUBSCRIBE, self.DLQ, *self.PUBLISH]:
            self.assertTrue(self.client.topic_exists(topic), f"{topic} was not created")

    def test_1a_heartbeat_request_and_health(self):
        node = self.first
        self.wait_started(node)
        beat = self.introspection_of(node, "heartbeat")
        self.assertEqual(beat["payload"]["current_state"], "running")
        # An introspection request is answered with the request's correlation id.
        ask = envelope("platform.request-introspection", {})
        self.client.send_envelope("onex.cmd.platform.request-introspection.v1", ask)
        # (Requests younger than a minute are answered by nodes starting later
        # too, so the answer is told apart by its correlation id.)
        answer = self.introspection_of(node, "request", ask["correlation_id"])
        self.assertEqual(answer["payload"]["correlation_id"], ask["correlation_id"])
        status, doc = wait_health(node.health_url(), lambda s, d: True, "a health document")
        self.assertEqual(status, 200)
        self.assertEqual((doc["status"], doc["bus"], doc["degraded"], doc["state"]),
                         ("healthy", "kafka", False, "running"), doc)
        self.assertEqual(doc["instance_id"], node.instance)

    def test_2_input_to_output(self):
        self.wait_started(self.first)
        for env, count in self.send_input():
            outputs = self.outputs_of(env["correlation_id"], count)
            for out in outputs:
                self.assertEqual(out["correlation_id"], env["correlation_id"])
                self.assertEqual(out["causation_id"], env["event_id"])
                self.assertNotEqual(out["event_id"], env["event_id"])
                self.assertEqual(out["source"]["service"], self.NODE)
                self.assertEqual(out["source"]["instance_id"], self.first.instance)
            self.check_outputs(env, outputs)
            self.state["handled"].append((env["correlation_id"], count))

    def test_3_not_json_to_dlq(self):
        self.wait_started(self.first)
        cid = str(uuid.uuid4())
        raw = b"this is not JSON {"
        self.client.send_raw(self.SUBSCRIBE, raw, [("correlation_id", cid.encode())])
        record = self.dead_letter(cid)
        self.check_dead_letter(record, raw, cid, "decode_error", "not an ONEX envelope")
        self.state["dead"].append(cid)

    def test_4_bad_payload_to_dlq(self):
        self.wait_started(self.first)
        env, cid, raw, error_type, reason = self.send_bad_payload()
        record = self.dead_letter(cid)
        self.check_dead_letter(record, raw, cid, error_type, reason)
        self.state["dead"].append(cid)
        # Nothing was published for the rejected message.
        published = [r for r in self.reader(*self.PUBLISH).drain() if correlated(cid)(r)]
        self.assertEqual(published, [], "a rejected message produced output")

    def test_5_sigterm_exits_0_with_offsets_committed(self):
        node = self.first
        self.wait_started(node)
        metrics = get_text(node.health_url("/metrics"))
        m = re.search(r'^onex_events_dead_lettered_total\{node="%s"\} (\d+)$' % self.NODE, metrics, re.M)
        self.assertIsNotNone(m, metrics)
        self.assertEqual(int(m.group(1)), len(self.state["dead"]), "dead letters counted by /metrics")
        in_flight = self.start_in_flight(node)
        started = time.monotonic()
        code = node.terminate(timeout=10)
        elapsed = time.monotonic() - started
        self.assertIsNotNone(code, f"no exit within 10 s of SIGTERM\n{node.tail()}")
        self.assertEqual(code, 0, f"exit code {code}\n{node.tail()}")
        self.assertLess(elapsed, 10.0)
        # A message in flight at SIGTERM was finished and its output published.
        for env, count in in_flight:
            outputs = self.outputs_of(env["correlation_id"], count)
            self.assertTrue(all(o["causation_id"] == env["event_id"] for o in outputs))
            self.state["handled"].append((env["correlation_id"], count))
        bye = self.introspection_of(node, "shutdown")
        self.assertEqual(bye["payload"]["node_name"], self.NODE)
        ends = self.client.end_offsets(self.SUBSCRIBE)
        committed = self.client.committed(self.GROUP, self.SUBSCRIBE)
        self.assertTrue(sum(ends.values()) > 0, "nothing was consumed")
        self.assertEqual(committed, ends, "committed offsets of the group vs the end of the topic")

    def test_6_restart_does_not_reprocess(self):
        self.assertTrue(self.state["handled"], "no earlier input to compare with (test 2 failed)")
        running = self.first.proc.poll() is None
        self.stop_running_nodes()
        self.assertFalse(running, "the first node was still running (test 5 failed)")
        node = self.start_node()
        self.wait_started(node)
        # New input is handled by the restarted node ...
        for env, count in self.send_input():
            outputs = self.outputs_of(env["correlation_id"], count)
            self.assertTrue(all(o["source"]["instance_id"] == node.instance for o in outputs))
        # ... and it came after the old messages in the topic, so had they been
        # handled again their second outputs would be there by now.
        published = self.reader(*self.PUBLISH).drain()
        for cid, count in self.state["handled"]:
            again = [r for r in published if correlated(cid)(r)]
            self.assertEqual(len(again), count, f"outputs for the already handled {cid}")
        dead = self.reader(self.DLQ).drain()
        for cid in self.state["dead"]:
            again = [r for r in dead if dead_letter_of(cid)(r)]
            self.assertEqual(len(again), 1, f"dead letters for {cid}")
        code = node.terminate(timeout=10)
        self.assertEqual(code, 0, node.tail())

    def test_7_degraded_without_broker(self):
        port = closed_port()
        node = self.start_node({
            "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}",
            "ONEX_BUS_CONNECT_TIMEOUT_SECONDS": "1",
        })
        url = node.health_url()
        status, doc = wait_health(url, lambda s, d: d.get("state") != "starting", "a started node")
        self.assertEqual(status, 200)
        self.assertEqual(doc["status"], "degraded", doc)
        self.assertIs(doc["degraded"], True, doc)
        self.assertEqual(doc["bus"], "in_memory", doc)
        self.assertEqual(doc["state"], "degraded", doc)
        self.assertEqual(doc["node_id"], self.NODE, doc)
        self.assertEqual(doc["instance_id"], node.instance, doc)
        node.wait_line(r"KAFKA UNREACHABLE")
        code = node.terminate(timeout=10)
        self.assertEqual(code, 0, node.tail())

    def test_8_introspect_flag_does_not_touch_the_bus(self):
        # A listener posing as the broker: --introspect must not connect to it.
        trap = socket.socket()
        trap.bind(("127.0.0.1", 0))
        trap.listen(8)
        trap.setblocking(False)
        try:
            servers = f"127.0.0.1:{trap.getsockname()[1]}"
            env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=servers)
            done = subprocess.run(
                [self.binary(), "--introspect", "--kafka-servers", servers],
                env=env, capture_output=True, timeout=10,
            )
            self.assertEqual(done.returncode, 0, done.stderr.decode())
            doc = json.loads(done.stdout)
            time.sleep(0.2)
            try:
                conn, _ = trap.accept()
                conn.close()
                self.fail("--introspect connected to the bootstrap server")
            except BlockingIOError:
                pass
        finally:
            trap.close()
        self.assertEqual(doc["node_name"], self.NODE)
        self.assertEqual(doc["node_type"], self.KIND)
        self.assertEqual(doc["topics"]["subscribe"], [self.SUBSCRIBE])
        self.assertEqual(sorted(doc["topics"]["publish"]), sorted(self.PUBLISH))
        self.assertEqual(doc["topics"]["dead_letter"], [self.DLQ])
        self.assertEqual(doc["topics"]["introspection"], INTROSPECTION_TOPIC)
        self.assertEqual(doc["consumer_group"], self.GROUP)
        self.assertEqual([e["name"] for e in doc["env"]["contract"]], self.ENV_VARS)
        bus_vars = {e["name"] for e in doc["env"]["bus"]}
        self.assertIn("KAFKA_BOOTSTRAP_SERVERS", bus_vars)


    def test_9a_skip_event_bus_runs_on_the_in_memory_bus(self):
        trap = socket.socket()
        trap.bind(("127.0.0.1", 0))
        trap.listen(8)
        trap.setblocking(False)
        try:
            node = self.start_node({"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:%d" % trap.getsockname()[1]},
                                   args=("--skip-event-bus",))
            status, doc = wait_health(node.health_url(), lambda s, d: d.get("state") != "starting",
                                      "a started node")
            # On purpose, so not degraded.
            self.assertEqual((status, doc["status"], doc["bus"], doc["degraded"], doc["state"]),
                             (200, "healthy", "in_memory", False, "running"), doc)
            code = node.terminate(timeout=10)
            self.assertEqual(code, 0, node.tail())
            with self.assertRaises(BlockingIOError, msg="--skip-event-bus connected to Kafka"):
                trap.accept()[0].close()
        finally:
            trap.close()

    def test_9b_config_file(self):
        instance = f"e2e-config-{uuid.uuid4()}"
        path = os.path.join(self.log_dir or "/tmp", f"{self.NODE}-{instance}.env")
        with open(path, "w", encoding="utf-8") as f:
            f.write("# settings for the e2e run\n"
                    f"KAFKA_BOOTSTRAP_SERVERS={bootstrap()}\n"
                    f"ONEX_INSTANCE_ID={instance}\n"
                    "ONEX_HEALTH_ADDR=127.0.0.1:0\n"
                    + "".join(f"{k}={v}\n" for k, v in self.EXTRA_ENV.items()))
        self.stop_running_nodes()
        try:
            node = NodeProcess(self.binary(), {"NO_COLOR": "1", "RUST_LOG": "info"},
                               ("--config", path), inherit_env=False)
            self.nodes.append(node)
            node.instance = instance
            hello = self.wait_started(node)
            self.assertEqual(hello["payload"]["node_name"], self.NODE)
            code = node.terminate(timeout=10)
            self.assertEqual(code, 0, node.tail())
        finally:
            os.remove(path)


class HandlerOutages:
    """Broker outages and SIGTERM while a node's user code runs (effect,
    compute): the class provides `outage_input(text)`, an input whose user
    code takes 3 s for the text `slow`, and the log lines of that code:
    `CALLED` for each call, `SLOW_STARTED` when a slow one starts, each
    followed by the input's correlation id."""

    CALLED = ""
    SLOW_STARTED = ""

    def outage_input(self, text):
        raise NotImplementedError

    def start_in_flight(self, node):
        env = self.outage_input("slow")
        self.client.send_envelope(self.SUBSCRIBE, env)
        node.wait_line(self.SLOW_STARTED + ".*" + env["correlation_id"])
        return [(env, 1)]

    def test_7b_broker_outage_within_the_session(self):
        """The broker stops answering (SIGSTOP) for 4 s, less than the 6 s
        consumer session, while a message is being handled and five more
        wait, then comes back (SIGCONT) and five more come: every input gets
        its output, none is dead-lettered, none is handled twice (a
        re-published output keeps its event id), and the node reports
        healthy afterwards. (An outage longer than the session is not tested
        here: tansu 0.6.0 then leaves the rejoining consumer without its
        partition; see README, "Fast recovery".)"""
        self.outage(pause_s=4, session_s=6)

    def test_7c_broker_outage_longer_than_a_publish(self):
        """As 7b, with publishes that give up after 1 s and no retry, and the
        broker stopped for 6 s (under a 15 s session): the output of the
        message in hand when the broker stopped cannot be published, so the
        message is delivered again, several times, before the broker is back.
        The handler, whose user code logs each call, is called once for every
        input all the same: what it returned is kept and published when the
        bus takes it."""
        self.outage(pause_s=6, session_s=15, settings=self.SHORT_PUBLISHES, one_call_each=True)

    def test_7d_broker_outage_with_many_inputs_in_flight(self):
        """As 7c, with `KAFKA_MAX_IN_FLIGHT=100` and each input under a key
        of its own: five slow inputs are handled at once when the broker
        stops, so five outputs fail while the inputs after them are done
        and wait for their offsets to be committed. Every input gets one
        output and one handler call, and the group's committed offsets
        reach the end of the topic."""
        settings = {**self.SHORT_PUBLISHES, "KAFKA_MAX_IN_FLIGHT": "100"}
        self.outage(pause_s=6, session_s=15, settings=settings, one_call_each=True, slow=5)

    def outage(self, pause_s, session_s, settings=None, one_call_each=False, slow=1):
        """The broker stopped for `pause_s` while `slow` inputs are handled
        (each under a key of its own when there are several) and five more
        wait; then five more come after it."""
        with self.node_on_a_broker_of_its_own("outage-broker", session_s, settings or {}) as started:
            broker, client, node = started
            outputs = client.reader(*self.PUBLISH)
            dead = client.reader(self.DLQ)
            slows = [self.outage_input("slow") for _ in range(slow)]
            sent = slows + [self.outage_input(f"before-{i}") for i in range(5)]
            key = (lambda e: e["correlation_id"]) if slow > 1 else (lambda e: None)
            client.send_envelopes(self.SUBSCRIBE, [(e, key(e)) for e in sent])
            for e in slows:
                node.wait_line(self.SLOW_STARTED + ".*" + e["correlation_id"])
            self.pause(broker, pause_s)
            after = [self.outage_input(f"after-{i}") for i in range(5)]
            client.send_envelopes(self.SUBSCRIBE, [(e, key(e)) for e in after])
            cids = {e["correlation_id"] for e in sent + after}
            deadline = time.monotonic() + 60
            while set(outputs_by_input(outputs, cids)) != cids:
                if time.monotonic() > deadline:
                    missing = len(cids - set(outputs_by_input(outputs, cids)))
                    raise AssertionError(f"no output for {missing} of {len(cids)} inputs 60 s after "
                                         f"a {pause_s} s outage\n{node.tail()}")
                outputs.poll()
            outputs.drain(timeout=10)
            ids = {c: {o["event_id"] for o in outs} for c, outs in outputs_by_input(outputs, cids).items()}
            twice = {c: i for c, i in ids.items() if len(i) > 1}
            self.assertEqual(twice, {}, "inputs handled twice (outputs with different event ids)")
            copies = sum(1 for r in outputs.records if (decode(r) or {}).get("correlation_id") in cids)
            letters = [r for r in dead.drain(timeout=10) if headers_dict(r).get("correlation_id") in cids]
            self.assertEqual(letters, [], "inputs dead-lettered because of the outage")
            self.healthy_on_kafka(node)
            # The user code logs each call, as the system it calls would see it.
            calls = {}
            called = re.compile(self.CALLED + r" correlation_id=(\S+)")
            for line in node.lines:
                m = called.search(line)
                if m and m.group(1) in cids:
                    calls[m.group(1)] = calls.get(m.group(1), 0) + 1
            redelivered = self.redeliveries(node, at_least=1 if one_call_each else 0)
            if one_call_each:
                self.assertEqual(calls, {c: 1 for c in cids}, "handler calls per input")
            print(f"\n  {self.KIND}: broker outage of {pause_s} s: "
                  f"{len(cids)} inputs, one output each, {copies - len(cids)} re-published, "
                  f"{sum(calls.values())} handler calls, {redelivered} redeliveries",
                  file=sys.stderr)
            for r in (outputs, dead):
                r.close()
            self.assertEqual(node.terminate(timeout=15), 0, node.tail())
            # Nothing stuck: the offsets of every input are committed. The
            # end of the topic is read, not asked for: tansu 0.6.0 answers
            # ListOffsets with the start of the last batch plus one.
            inputs = client.reader(self.SUBSCRIBE)
            ends = {}
            for r in inputs.wait_all(lambda r: True, len(cids), "inputs"):
                ends[r.partition] = max(ends.get(r.partition, 0), r.offset + 1)
            inputs.close()
            self.assertEqual(client.committed(self.GROUP, self.SUBSCRIBE), ends,
                             "committed offsets of the group vs the end of the topic")


class EffectNode(HandlerOutages, NodeE2E, unittest.TestCase):
    NODE = "node_echo_effect"
    KIND = "effect"
    GROUP = "demo.echo_effect"
    SUBSCRIBE = "onex.cmd.demo.echo-requested.v1"
    PUBLISH = ["onex.evt.demo.echo-completed.v1"]
    DLQ = "onex.dlq.demo.echo.v1"
    ENV_VARS = ["ECHO_PREFIX"]
    EXTRA_ENV = {"ECHO_PREFIX": "e2e:"}
    CALLED = "echo called"
    SLOW_STARTED = "slow echo started"

    def outage_input(self, text):
        return envelope("demo.echo-requested", {"message": text})

    def send_input(self):
        env = envelope("demo.echo-requested", {"message": "hello", "repeat": 2})
        self.client.send_envelope(self.SUBSCRIBE, env)
        return [(env, 1)]

    def check_outputs(self, env, outputs):
        (out,) = outputs
        self.assertEqual(out["event_type"], "node-echo-effect.echo.completed")
        # ECHO_PREFIX reached the user's handler; repeat=2 was decoded.
        self.assertEqual(out["payload"], {"message": "e2e:hello e2e:hello"})

    def send_bad_payload(self):
        env = envelope("demo.echo-requested", {"repeat": "twice"})
        raw = self.client.send_envelope(self.SUBSCRIBE, env)
        return env, env["correlation_id"], raw, "invalid_input", "EchoInput"

    def test_4a_retriable_failure_retried_then_dead_lettered(self):
        self.wait_started(self.first)
        env = envelope("demo.echo-requested", {"message": "unavailable"})
        raw = self.client.send_envelope(self.SUBSCRIBE, env)
        record = self.dead_letter(env["correlation_id"])
        # retry_policy.max_retries: 2 from the contract.
        self.check_dead_letter(record, raw, env["correlation_id"], "retriable",
                               "echo backend unavailable (attempt 2)", retries=2)
        self.state["dead"].append(env["correlation_id"])
        self.first.wait_line(r"handler failed; retrying.*attempt=2")

    def test_4b_dead_letter_headers_are_not_duplicated(self):
        # Known headers with values that do not decode are kept verbatim; the
        # dead letter must still carry one correlation_id and one retry_count.
        self.wait_started(self.first)
        env = envelope("demo.echo-requested", {"repeat": "often"})
        raw = json.dumps(env).encode()
        self.client.send_raw(self.SUBSCRIBE, raw, [("correlation_id", b"garbage"), ("retry_count", b"7")])
        record = self.reader(self.DLQ).wait_for(lambda r: original_value(r) == raw, "for the message")
        names = [k for k, _ in record.headers]
        self.assertEqual(sorted(set(n for n in names if names.count(n) > 1)), [], record.headers)
        self.check_dead_letter(record, raw, env["correlation_id"], "invalid_input", "EchoInput")
        self.state["dead"].append(env["correlation_id"])


    def test_7a_degraded_node_moves_to_a_broker_that_appears(self):
        tansu = tansu_binary()
        if tansu is None:
            self.skipTest("no tansu binary (set TANSU_BIN)")
        port = closed_port()
        node = self.start_node({
            "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}",
            "ONEX_BUS_CONNECT_TIMEOUT_SECONDS": "1",
            "ONEX_BUS_RECONNECT_INTERVAL_SECONDS": "1",
        })
        url = node.health_url()
        wait_health(url, lambda s, d: d.get("degraded") is True, "degraded")
        workdir = os.path.join(os.environ.get("ONEX_E2E_LOG_DIR") or "/tmp", f"late-broker-{port}")
        broker = Broker(tansu, port, workdir)
        client = None
        try:
            status, doc = wait_health(url, lambda s, d: d.get("bus") == "kafka", "the Kafka bus", timeout=60)
            self.assertEqual((status, doc["status"], doc["degraded"], doc["state"]),
                             (200, "healthy", False, "running"), doc)
            client = Client(broker.address)
            # On the new broker: a start-up introspection event, and input is handled.
            intro = client.reader(INTROSPECTION_TOPIC)
            hello = intro.wait_for(
                lambda r: (decode(r) or {}).get("payload", {}).get("capabilities", {})
                .get("metadata", {}).get("instance_id") == node.instance,
                "introspection of the reconnected node")
            self.assertEqual(decode(hello)["payload"]["reason"], "startup")
            env = envelope("demo.echo-requested", {"message": "late"})
            client.send_envelope(self.SUBSCRIBE, env)
            out = client.reader(*self.PUBLISH).wait_for(correlated(env["correlation_id"]), "output")
            self.assertEqual(decode(out)["payload"], {"message": "e2e:late"})
            intro.close()
            code = node.terminate(timeout=10)
            self.assertEqual(code, 0, node.tail())
        finally:
            if client is not None:
                client.close()
            if node.proc.poll() is None:
                node.terminate(timeout=10)
            broker.stop()

    def test_9c_sigkill_mid_stream_then_restart(self):
        """SIGKILL while the slow message is handled, the 20 inputs before it
        answered (their offsets committed in the background every 5 s, so
        mostly not yet) and 10 waiting behind it; restarted with the same
        instance id: every input gets its output, an input handled again
        publishes its output with the id of the first time (dropping
        duplicate ids leaves one output per input), none is dead-lettered,
        and the handler of an input handled again saw the idempotency key of
        its first run, `node_echo_effect:<input event id>`."""
        self.stop_running_nodes()
        instance = f"e2e-effect-killed-{uuid.uuid4()}"
        env = {"ONEX_INSTANCE_ID": instance}
        node = killed = self.start_node(env)
        node.instance = instance
        self.wait_started(node)
        before = [envelope("demo.echo-requested", {"message": f"k-{i}"}) for i in range(20)]
        slow = envelope("demo.echo-requested", {"message": "slow"})
        after = [envelope("demo.echo-requested", {"message": f"k-{i}"}) for i in range(20, 30)]
        sent = before + [slow] + after
        self.client.send_envelopes(self.SUBSCRIBE, [(e, None) for e in sent])
        node.wait_line("slow echo started.*" + slow["correlation_id"])
        node.kill()
        committed = self.client.committed(self.GROUP, self.SUBSCRIBE)
        outputs = self.reader(*self.PUBLISH)
        outputs.drain()
        cids = {e["correlation_id"]: e for e in sent}
        out_before_restart = len(outputs_by_input(outputs, cids))
        node = self.start_node(env)
        node.instance = instance
        restarted = time.monotonic()
        deadline = restarted + 60
        while set(outputs_by_input(outputs, cids)) != set(cids):
            if time.monotonic() > deadline:
                missing = len(set(cids) - set(outputs_by_input(outputs, cids)))
                raise AssertionError(f"no output for {missing} of {len(cids)} inputs 60 s after "
                                     f"the restart\n{node.tail()}")
            outputs.poll()
        answered_again = time.monotonic() - restarted
        outputs.drain()
        republished = 0
        for cid, outs in outputs_by_input(outputs, cids).items():
            first = outs[0]
            self.assertEqual(first["causation_id"], cids[cid]["event_id"])
            for again in outs[1:]:
                self.assertEqual(again["event_id"], first["event_id"],
                                 "an input handled again publishes its output with the same id")
                self.assertEqual(again["payload"], first["payload"])
                republished += 1
        # The user code logs each call's key, as the system it calls would
        # record it.
        runs = {}
        called = re.compile(r"echo called correlation_id=(\S+) idempotency_key=(\S+)")
        for line in killed.lines + node.lines:
            m = called.search(line)
            if m and m.group(1) in cids:
                runs.setdefault(m.group(1), []).append(m.group(2))
        self.assertEqual(set(runs), set(cids), "every input reached the handler")
        for cid, keys in runs.items():
            self.assertEqual(set(keys), {f"node_echo_effect:{cids[cid]['event_id']}"},
                             "the idempotency key names the input, on every run")
        again = [cid for cid, keys in runs.items() if len(keys) > 1]
        self.assertIn(slow["correlation_id"], again, "the input in hand at the kill is handled again")
        letters = [r for r in self.reader(self.DLQ).drain()
                   if headers_dict(r).get("correlation_id") in cids]
        self.assertEqual(letters, [], "inputs dead-lettered because of the kill")
        print(f"\n  effect: killed with {out_before_restart} of {len(cids)} inputs answered "
              f"(committed offsets {committed}); after the restart {len(again)} handled again, "
              f"{republished} output(s) re-published with their first id; "
              f"all answered {answered_again:.1f} s after the restart", file=sys.stderr)
        self.assertEqual(node.terminate(timeout=10), 0, node.tail())


class ComputeNode(HandlerOutages, NodeE2E, unittest.TestCase):
    NODE = "node_word_count_compute"
    KIND = "compute"
    GROUP = "node_word_count_compute"
    SUBSCRIBE = "onex.cmd.demo.word-count-requested.v1"
    PUBLISH = ["onex.evt.demo.word-count-completed.v1"]
    DLQ = "onex.cmd.demo.word-count-requested.v1.dlq"
    CALLED = "count called"
    SLOW_STARTED = "slow count started"

    def outage_input(self, text):
        return envelope("demo.word-count-requested", {"text": text})

    def send_input(self):
        env = envelope("demo.word-count-requested", {"text": "one two three", "min_length": 2})
        self.client.send_envelope(self.SUBSCRIBE, env)
        return [(env, 1)]

    def check_outputs(self, env, outputs):
        (out,) = outputs
        self.assertEqual(out["event_type"], "node-word-count-compute.compute.completed")
        # "one two three" with min_length 2: the user's compute function ran.
        self.assertEqual(out["payload"], {"words": 3, "longest": "three"})

    def send_bad_payload(self):
        env = envelope("demo.word-count-requested", {"text": 42})
        raw = self.client.send_envelope(self.SUBSCRIBE, env)
        return env, env["correlation_id"], raw, "invalid_input", "NodeInput"

    def duplicates_skipped(self, node):
        metrics = get_text(node.health_url("/metrics"))
        m = re.search(r'^onex_\w*duplicates_skipped_total\{node="%s"\} (\d+)$' % self.NODE, metrics, re.M)
        self.assertIsNotNone(m, metrics)
        return int(m.group(1))

    def test_9c_sigkill_after_answers_then_restart(self):
        """The contract asks for idempotency by event id. SIGKILL as soon as
        a batch of inputs is answered, before the node's background commit
        (every 5 s) took their offsets; restarted with the same instance id,
        the node gets them again and skips every one: it recorded each in its
        ledger topic before acknowledging it. An outside consumer sees one
        output per input, and the input sent after the restart is answered.
        (Should a commit land between the answers and the kill, nothing is
        delivered again: another batch is sent, up to 3 times.)"""
        self.sigkill_after_answers_then_restart({}, keyed=False)

    def test_9c_sigkill_after_answers_then_restart_many_in_flight(self):
        """The same with KAFKA_MAX_IN_FLIGHT=100 and each input under a key
        of its own: the node handles many at once, each recorded in the
        ledger before it is acknowledged, and after the SIGKILL and the
        restart every input delivered again is skipped all the same."""
        self.sigkill_after_answers_then_restart({"KAFKA_MAX_IN_FLIGHT": "100"}, keyed=True)

    def sigkill_after_answers_then_restart(self, extra_env, keyed):
        self.stop_running_nodes()
        instance = f"e2e-compute-killed-{uuid.uuid4()}"
        env = {"ONEX_INSTANCE_ID": instance, **extra_env}
        outputs = self.reader(*self.PUBLISH)
        cids = {}
        for attempt in range(3):
            node = self.start_node(env)
            node.instance = instance
            self.wait_started(node)
            batch = [envelope("demo.word-count-requested", {"text": f"batch {attempt} input {i}"})
                     for i in range(20)]
            cids.update((e["correlation_id"], e) for e in batch)
            self.client.send_envelopes(
                self.SUBSCRIBE, [(e, e["event_id"] if keyed else None) for e in batch])
            deadline = time.monotonic() + 60
            while set(outputs_by_input(outputs, cids)) != set(cids):
                if time.monotonic() > deadline:
                    raise AssertionError(f"no output for some of {len(cids)} inputs\n{node.tail()}")
                outputs.poll()
            node.kill()
            # (tansu's offsets count a producer's batch as one record: compare, do not subtract)
            ends = self.client.end_offsets(self.SUBSCRIBE)
            committed = self.client.committed(self.GROUP, self.SUBSCRIBE)
            if committed != ends:
                break
        self.assertNotEqual(committed, ends, "every kill came after a commit: nothing is delivered again")
        node = self.start_node(env)
        node.instance = instance
        self.wait_started(node)
        marker = envelope("demo.word-count-requested", {"text": "after the restart"})
        self.client.send_envelope(self.SUBSCRIBE, marker)
        self.outputs_of(marker["correlation_id"], 1)
        outputs.drain()
        answers = {cid: len(outs) for cid, outs in outputs_by_input(outputs, cids).items()}
        self.assertEqual(set(answers), set(cids), "every input answered")
        self.assertEqual({c: n for c, n in answers.items() if n != 1}, {},
                         "inputs answered more than once")
        skipped = self.duplicates_skipped(node)
        self.assertGreater(skipped, 0, "inputs delivered again after the restart")
        print(f"\n  compute {extra_env or ''}: killed with {len(cids)} inputs answered (committed offsets "
              f"{committed}, log end {ends}); after the restart {skipped} delivered again, "
              f"all skipped: 0 answered twice", file=sys.stderr)
        self.assertEqual(node.terminate(timeout=10), 0, node.tail())


class ReducerNode(NodeE2E, unittest.TestCase):
    NODE = "node_order_status_reducer"
    KIND = "reducer"
    GROUP = "node_order_status_reducer"
    SUBSCRIBE = "onex.evt.demo.order-events.v1"
    PUBLISH = ["onex.evt.demo.order-status-changed.v1", "onex.evt.demo.order-closed.v1"]
    DLQ = "onex.evt.demo.order-events.v1.dlq"
    STATUS, CLOSED = PUBLISH

    def send_input(self):
        order = f"order-{uuid.uuid4()}"
        paid = envelope("demo.order.payment_captured", {"aggregate_id": order, "amount": 10})
        self.client.send_envelope(self.SUBSCRIBE, paid, key=order)
        # Wait for the first change so the second is judged against state `paid`.
        self.outputs_of(paid["correlation_id"], 1)
        cancelled = envelope("demo.order.order_cancelled", {"aggregate_id": order})
        self.client.send_envelope(self.SUBSCRIBE, cancelled, key=order)
        return [(paid, 1), (cancelled, 2)]

    def check_outputs(self, env, outputs):
        order = env["payload"]["aggregate_id"]
        if env["event_type"].endswith("payment_captured"):
            (out,) = outputs
            self.assertEqual(out["event_type"], "node-order-status-reducer.state-changed")
            self.assertEqual(out["payload"], {
                "aggregate_id": order, "from_state": "pending", "to_state": "paid",
                "trigger": "payment_captured", "terminal": False,
            })
        else:
            by_type = {o["event_type"]: o for o in outputs}
            self.assertEqual(sorted(by_type), ["node-order-status-reducer.completed",
                                               "node-order-status-reducer.state-changed"])
            change = {"aggregate_id": order, "from_state": "paid", "to_state": "cancelled",
                      "trigger": "order_cancelled", "terminal": True}
            self.assertEqual(by_type["node-order-status-reducer.state-changed"]["payload"], change)
            self.assertEqual(by_type["node-order-status-reducer.completed"]["payload"], change)
            # The terminal event went to the contract's terminal_event topic.
            closed = self.reader(self.CLOSED).wait_for(correlated(env["correlation_id"]), "on the terminal topic")
            self.assertEqual(decode(closed)["event_type"], "node-order-status-reducer.completed")
            self.assertEqual(closed.key, order.encode(), "state events are keyed by aggregate")

    def send_bad_payload(self):
        # pending -> shipped is not a declared transition.
        order = f"order-{uuid.uuid4()}"
        env = envelope("demo.order.order_shipped", {"aggregate_id": order})
        raw = self.client.send_envelope(self.SUBSCRIBE, env, key=order)
        return env, env["correlation_id"], raw, "invalid_input", "order_shipped"

    def test_4a_guard_rejection_to_dlq(self):
        self.wait_started(self.first)
        order = f"order-{uuid.uuid4()}"
        env = envelope("demo.order.payment_captured", {"aggregate_id": order, "amount": 0})
        raw = self.client.send_envelope(self.SUBSCRIBE, env, key=order)
        record = self.dead_letter(env["correlation_id"])
        self.check_dead_letter(record, raw, env["correlation_id"], "invalid_input", "amount_positive")
        self.state["dead"].append(env["correlation_id"])

    # -- durable state (run after the shared tests: they stop every node) ----

    def send_orders(self, orders, trigger, extra=None, client=None):
        """One event per order, sent as one burst (by `client`, else the
        class's); returns their correlation ids."""
        items = [(envelope(f"demo.order.{trigger}", {"aggregate_id": order, **(extra or {})}), order)
                 for order in orders]
        (client or self.client).send_envelopes(self.SUBSCRIBE, items)
        return [env["correlation_id"] for env, _ in items]

    def changes_of(self, orders, status=None):
        """State-change records of these orders in topic order, as read by
        `status` (else the class's reader): [(event id, payload)]."""
        wanted = set(orders)
        out = []
        for r in (status or self.reader(self.STATUS)).records:
            env = decode(r)
            if isinstance(env, dict) and (env.get("payload") or {}).get("aggregate_id") in wanted:
                out.append((env["event_id"], env["payload"]))
        return out

    def wait_changes(self, orders, count, timeout=60, status=None):
        status = status or self.reader(self.STATUS)
        deadline = time.monotonic() + timeout
        while True:
            distinct = {eid for eid, _ in self.changes_of(orders, status)}
            if len(distinct) >= count:
                return distinct
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(distinct)} of {count} state changes within {timeout} s")
            status.poll()

    def first_change_after(self, ends, timeout=60):
        """Waits for a state change beyond the end offsets `ends` of the status
        topic; returns its record."""
        reader = self.reader(self.STATUS)
        return reader.wait_for(lambda r: r.offset >= ends.get(r.partition, 0),
                               "published after the kill", timeout=timeout)

    def kill_mid_stream(self, node, orders, seen):
        """SIGKILL once `seen` changes of `orders` are out, the node being
        started with E2E_SLOW_AGGREGATE naming the next order (its handler
        then takes 5 s over it): inputs are waiting behind it. Returns the
        end offsets of the status topic (the dead process cannot add to
        them) and the changes that were out."""
        self.wait_changes(orders, seen)
        node.kill()
        ends = self.client.end_offsets(self.STATUS)
        self.reader(self.STATUS).drain()
        done = len({eid for eid, _ in self.changes_of(orders)})
        self.assertEqual(done, seen, "the node was stopped by the slow order, the later ones waiting")
        return ends, done

    def check_each_transition_once(self, orders, cids, status=None, dlq=None):
        status = status or self.reader(self.STATUS)
        # Zero dead letters for these inputs.
        dead = [r for r in (dlq or self.reader(self.DLQ)).drain()
                if headers_dict(r).get("correlation_id") in set(cids)]
        self.assertEqual(dead, [], "dead letters for the orders")
        # A consumer dropping duplicate ids sees each transition once, in order.
        status.drain()
        seen, by_order, duplicates = {}, {}, 0
        for eid, payload in self.changes_of(orders, status):
            if eid in seen:
                self.assertEqual(seen[eid], payload, "a re-published event id carries the same change")
                duplicates += 1
                continue
            seen[eid] = payload
            by_order.setdefault(payload["aggregate_id"], []).append((payload["from_state"], payload["to_state"]))
        for order in orders:
            self.assertEqual(by_order.get(order), [("pending", "paid"), ("paid", "shipped")], order)
        return duplicates

    def test_7c_broker_outage_longer_than_a_publish(self):
        """The reducer's side of the effect's 7c, on a broker of its own: 70
        orders paid while the node takes 5 s over the 21st (its guard) and
        the rest wait; the broker stopped (SIGSTOP) for 6 s as the 21st is
        handled, with publishes that give up after 1 s and no retry, under a
        15 s session, so its state change and state write fail and it is
        handled again from the state before it; then every order shipped.
        Every order's two transitions are published, once each by id and in
        order, none is dead-lettered, and the node is healthy after."""
        pause_s = 6
        orders = [f"order-{uuid.uuid4()}" for _ in range(70)]
        settings = {"E2E_SLOW_AGGREGATE": orders[20], **self.SHORT_PUBLISHES}
        instance = f"e2e-reducer-outage-{uuid.uuid4()}"
        with self.node_on_a_broker_of_its_own("reducer-outage", 15, settings, instance) as started:
            broker, client, node = started
            status, dlq = client.reader(self.STATUS), client.reader(self.DLQ)
            cids = self.send_orders(orders, "payment_captured", {"amount": 10}, client=client)
            self.wait_changes(orders, 20, status=status)
            self.pause(broker, pause_s)
            self.wait_changes(orders, 70, timeout=90, status=status)
            cids += self.send_orders(orders, "order_shipped", client=client)
            self.wait_changes(orders, 140, status=status)
            duplicates = self.check_each_transition_once(orders, cids, status=status, dlq=dlq)
            self.healthy_on_kafka(node)
            redelivered = self.redeliveries(node, at_least=1)
            print(f"\n  reducer, broker outage of {pause_s} s: 140 transitions, each once by id, "
                  f"{duplicates} re-published duplicate(s) dropped by id, {redelivered} redeliveries",
                  file=sys.stderr)
            for r in (status, dlq):
                r.close()
            self.assertEqual(node.terminate(timeout=15), 0, node.tail())

    def test_9c_two_sigkills_mid_stream(self):
        self.stop_running_nodes()
        instance = f"e2e-reducer-durable-{uuid.uuid4()}"
        orders = [f"order-{uuid.uuid4()}" for _ in range(200)]
        batches = [orders[:70], orders[70:140], orders[140:]]
        # Each start names the order at which the node is killed next.
        node = self.start_node(durable_env(instance, {"E2E_SLOW_AGGREGATE": orders[20]}))
        node.instance = instance
        self.wait_started(node)
        cids = self.send_orders(batches[0], "payment_captured", {"amount": 10})
        report = []
        for done_before, batch, slow in ((20, batches[1], orders[90]), (90, batches[2], None)):
            ends, done = self.kill_mid_stream(node, orders, done_before)
            sent = len(cids)
            node = self.start_node(durable_env(instance, {"E2E_SLOW_AGGREGATE": slow or ""}))
            node.instance = instance
            restarted = time.monotonic()
            # The restarted node's first change comes from the backlog left
            # by the kill.
            first = self.first_change_after(ends)
            self.assertEqual(decode(first)["source"]["instance_id"], instance)
            report.append((done, sent, time.monotonic() - restarted))
            cids += self.send_orders(batch, "payment_captured", {"amount": 10})
        self.wait_changes(orders, 200)
        # Legal only from `paid`, the state reached (partly) before the kills.
        cids += self.send_orders(orders, "order_shipped")
        self.wait_changes(orders, 400)
        duplicates = self.check_each_transition_once(orders, cids)
        print("\n  reducer: " + "; ".join(
            f"killed with {done} of {sent} changes out, processing again {secs:.1f} s after the restart"
            for done, sent, secs in report) + f"; {duplicates} re-published duplicate(s) dropped by id")
        self.assertEqual(node.terminate(timeout=10), 0, node.tail())

    def test_9d_two_instances_one_killed(self):
        """Two members of one group; the one owning the partition is SIGKILLed
        mid-stream and the other takes the partition over, restores its state
        and goes on.

        tansu 0.6.0 moves a dead member's partitions only when a member joins
        (a survivor's heartbeat drops the dead member but keeps the old
        assignment), so a replacement instance is started, as an orchestrator
        would, once the survivor saw the broker drop the killed member. Which
        member gets the partition follows the member ids, which begin with
        the client id (= instance id): the owner is `...-0`, started second
        (the first member leads the group, and a group whose leader died is
        never re-formed by tansu 0.6.0), the survivor `...-1`, the
        replacement `...-2`."""
        self.stop_running_nodes()
        orders = [f"order-{uuid.uuid4()}" for _ in range(100)]
        run = uuid.uuid4()
        names = [f"e2e-reducer-pair-{run}-{i}" for i in range(3)]
        assigned = r"partitions assigned topics=%s partitions=1" % re.escape(self.SUBSCRIBE)
        survivor = self.start_node(durable_env(names[1]))
        survivor.instance = names[1]
        self.wait_started(survivor)
        owner = self.start_node(durable_env(names[0], {"E2E_SLOW_AGGREGATE": orders[20]}))
        owner.instance = names[0]
        self.wait_started(owner)
        # The group re-formed with both: the member started second owns the partition.
        owner.wait_line(assigned)
        cids = self.send_orders(orders[:60], "payment_captured", {"amount": 10})
        self.wait_changes(orders, 10)
        wanted = set(orders)
        owners = {decode(r)["source"]["instance_id"] for r in self.reader(self.STATUS).records
                  if (decode(r).get("payload") or {}).get("aggregate_id") in wanted}
        self.assertEqual(owners, {owner.instance}, "the partition is owned by the member started second")
        mark = len(survivor.lines)
        ends, done = self.kill_mid_stream(owner, orders, 20)
        killed = time.monotonic()
        # The broker drops the killed member at the survivor's next heartbeat
        # after the session; the survivor is told through a rebalance.
        deadline = time.monotonic() + 30
        while not any("partitions revoked topics=" in line for line in survivor.lines[mark:]):
            self.assertLess(time.monotonic(), deadline, "the survivor saw no rebalance\n" + survivor.tail())
            time.sleep(0.1)
        replacement = self.start_node(durable_env(names[2]))
        replacement.instance = names[2]
        cids += self.send_orders(orders[60:], "payment_captured", {"amount": 10})
        first = self.first_change_after(ends)
        took_over = time.monotonic() - killed
        self.assertEqual(decode(first)["source"]["instance_id"], survivor.instance)
        self.wait_changes(orders, 100, timeout=90)
        cids += self.send_orders(orders, "order_shipped")
        self.wait_changes(orders, 200, timeout=90)
        self.check_each_transition_once(orders, cids)
        # The survivor restored the partition the killed member had written.
        restored = [line for line in survivor.lines[mark:] if "state restored" in line]
        self.assertTrue(restored, survivor.tail())
        records = int(re.search(r"records=(\d+)", restored[0]).group(1))
        self.assertGreaterEqual(records, done, restored[0])
        after = {decode(r)["source"]["instance_id"] for r in self.reader(self.STATUS).records
                 if r.offset >= ends.get(r.partition, 0)}
        self.assertEqual(after, {survivor.instance}, "changes after the kill come from the survivor")
        print(f"\n  reducer pair: the survivor published again {took_over:.1f} s after the SIGKILL "
              f"(restored {records} records)")
        for node in (survivor, replacement):
            self.assertEqual(node.terminate(timeout=10), 0, node.tail())


class OrchestratorNode(NodeE2E, unittest.TestCase):
    NODE = "node_order_fulfilment_orchestrator"
    KIND = "orchestrator"
    GROUP = "node_order_fulfilment_orchestrator"
    SUBSCRIBE = "onex.cmd.demo.fulfil-order.v1"
    PUBLISH = ["onex.evt.demo.fulfilment-progress.v1", "onex.evt.demo.fulfilment-completed.v1"]
    DLQ = "onex.cmd.demo.fulfil-order.v1.dlq"
    STEPS = ["reserve_stock", "charge_customer", "book_shipping"]

    def send_input(self):
        env = envelope("demo.fulfil-order", {"order_id": f"order-{uuid.uuid4()}"})
        self.client.send_envelope(self.SUBSCRIBE, env)
        return [(env, 4)]

    def check_outputs(self, env, outputs):
        steps = [o for o in outputs
                 if o["event_type"] == "node-order-fulfilment-orchestrator.step-completed"]
        done = [o for o in outputs
                if o["event_type"] == "node-order-fulfilment-orchestrator.workflow-completed"]
        # Steps ran in dependency order, one stage event each.
        self.assertEqual([s["payload"]["step"] for s in steps], self.STEPS)
        self.assertTrue(all(s["payload"]["workflow"] == "order_fulfilment" for s in steps))
        self.assertEqual(len(done), 1, "one completion event (terminal_event is the same topic)")
        completion = done[0]["payload"]
        self.assertEqual(completion["workflow"], "order_fulfilment")
        self.assertEqual(completion["status"], "completed")
        self.assertEqual(sorted(completion["results"]), sorted(self.STEPS))
        on_topic = self.reader(self.PUBLISH[1]).wait_for(correlated(env["correlation_id"]), "completion")
        self.assertEqual(decode(on_topic)["event_type"], done[0]["event_type"])
        # Nothing else than the four events was published for this workflow run.
        published = [r for r in self.reader(*self.PUBLISH).drain() if correlated(env["correlation_id"])(r)]
        self.assertEqual(len(published), 4)

    def send_bad_payload(self):
        # Valid JSON, but not an ONEX envelope.
        cid = str(uuid.uuid4())
        raw = json.dumps({"order_id": "o-1", "hello": "world"}).encode()
        self.client.send_raw(self.SUBSCRIBE, raw, [("correlation_id", cid.encode())])
        return None, cid, raw, "decode_error", "not an ONEX envelope"

    def test_4a_failing_step_stops_the_workflow(self):
        self.wait_started(self.first)
        env = envelope("demo.fulfil-order", {"order_id": "o-declined", "card": "declined"})
        raw = self.client.send_envelope(self.SUBSCRIBE, env)
        # A failed workflow is not acknowledged as handled: it is dead-lettered ...
        record = self.dead_letter(env["correlation_id"])
        self.check_dead_letter(record, raw, env["correlation_id"], "fatal", "card declined")
        self.state["dead"].append(env["correlation_id"])
        # ... and announced on the failure topic (here the completion topic).
        (failed,) = self.outputs_of(env["correlation_id"], 1)
        self.assertEqual(failed["causation_id"], env["event_id"])
        self.assertEqual(failed["event_type"], "node-order-fulfilment-orchestrator.workflow-failed")
        self.assertEqual(failed["payload"]["status"], "failed")
        self.assertEqual(failed["payload"]["workflow_id"], env["event_id"])
        self.assertEqual(failed["payload"]["failed_step"], "charge_customer")
        self.assertEqual(failed["payload"]["completed_steps"], ["reserve_stock"])
        self.assertIn("card declined", failed["payload"]["error"])
        # Shipping never ran, and no stage event was published.
        published = [r for r in self.reader(*self.PUBLISH).drain() if correlated(env["correlation_id"])(r)]
        self.assertEqual(len(published), 1)

    # -- durable progress (run after the shared tests: they stop every node) ----

    SNAPSHOT = "onex.snapshot.demo.node-order-fulfilment-orchestrator.v1"

    @classmethod
    def durable_node(cls):
        """A node that keeps its instance id across restarts."""
        if not hasattr(cls, "step_log"):
            cls.step_log = os.path.join(tempfile.mkdtemp(prefix="onex-e2e-steps-"), "steps.log")
        node = cls.start_node(durable_env("e2e-orchestrator-durable", {"E2E_STEP_LOG": cls.step_log}))
        node.instance = "e2e-orchestrator-durable"
        return node

    def step_runs(self, workflow_id, step_log=None):
        """[(step, attempt, unix ms, outcome)] of one workflow, in the order
        they ran, from `step_log` (else the durable node's)."""
        try:
            with open(step_log or self.step_log, encoding="utf-8") as f:
                lines = f.read().split("\n")
        except FileNotFoundError:
            return []
        runs = []
        for line in lines:
            parts = line.split()
            if len(parts) == 4 and parts[0].startswith(f"{workflow_id}:"):
                runs.append((parts[0].split(":", 1)[1], int(parts[1]), int(parts[2]), parts[3]))
        return runs

    def test_7c_broker_outage_longer_than_a_publish(self):
        """The orchestrator's side of the effect's 7c, on a broker of its own:
        a workflow whose charging takes 3 s, the broker stopped (SIGSTOP) for
        6 s as charging starts, with publishes that give up after 1 s and no
        retry (15 s session), so the progress written after charging and
        after shipping, and the run's events, fail. Every step runs once (the
        steps' own log), the workflow completes once with its four events,
        nothing is dead-lettered, and three workflows sent after the outage
        complete too."""
        pause_s = 6
        step_log = os.path.join(tempfile.mkdtemp(prefix="onex-e2e-steps-"), "steps.log")
        settings = {"E2E_STEP_LOG": step_log, **self.SHORT_PUBLISHES}
        instance = f"e2e-orchestrator-outage-{uuid.uuid4()}"
        with self.node_on_a_broker_of_its_own("orchestrator-outage", 15, settings, instance) as started:
            broker, client, node = started
            outputs, dlq = client.reader(*self.PUBLISH), client.reader(self.DLQ)
            snapshot = client.reader(self.SNAPSHOT)
            slow = envelope("demo.fulfil-order", {"order_id": f"order-{uuid.uuid4()}", "charge_delay_ms": 3000})
            client.send_envelope(self.SUBSCRIBE, slow)
            # Charging starts once the first step's progress is written.
            snapshot.wait_for(lambda r: r.key == slow["event_id"].encode(), "progress record")
            self.pause(broker, pause_s)
            after = [envelope("demo.fulfil-order", {"order_id": f"order-{uuid.uuid4()}"}) for _ in range(3)]
            for env in after:
                client.send_envelope(self.SUBSCRIBE, env)
            for env in [slow] + after:
                outputs.wait_all(correlated(env["correlation_id"]), 4,
                                 f"with correlation id {env['correlation_id']}", timeout=60)
            outputs.drain()
            for env in [slow] + after:
                events = {}
                for r in outputs.records:
                    if correlated(env["correlation_id"])(r):
                        e = decode(r)
                        events.setdefault(e["event_id"], e)
                kinds = sorted(e["event_type"].rsplit(".", 1)[1] for e in events.values())
                self.assertEqual(kinds, ["step-completed"] * 3 + ["workflow-completed"],
                                 "four events by id")
                runs = self.step_runs(env["event_id"], step_log)
                self.assertEqual([(step, outcome) for step, _, _, outcome in runs],
                                 [(step, "done") for step in self.STEPS], "each step ran once")
            cids = {env["correlation_id"] for env in [slow] + after}
            letters = [r for r in dlq.drain(timeout=10) if headers_dict(r).get("correlation_id") in cids]
            self.assertEqual(letters, [], "workflows dead-lettered because of the outage")
            redelivered = self.redeliveries(node)
            kept = sum(1 for line in node.lines if "the progress is not on the bus yet" in line)
            self.assertGreater(kept, 0, "no progress write failed: nothing tested\n" + node.tail())
            print(f"\n  orchestrator, broker outage of {pause_s} s: 4 workflows completed, each step once; "
                  f"{kept} progress write(s) kept for later, {redelivered} redeliveries",
                  file=sys.stderr)
            for r in (outputs, dlq, snapshot):
                r.close()
            self.assertEqual(node.terminate(timeout=15), 0, node.tail())

    def test_9c_killed_between_steps_resumes_at_the_second(self):
        self.stop_running_nodes()
        node = self.durable_node()
        self.wait_started(node)
        env = envelope("demo.fulfil-order", {"order_id": f"order-{uuid.uuid4()}", "charge_delay_ms": 3000})
        self.client.send_envelope(self.SUBSCRIBE, env)
        # The first step's progress is on the snapshot topic: kill during the second.
        self.reader(self.SNAPSHOT).wait_for(lambda r: r.key == env["event_id"].encode(), "progress record")
        self.assertEqual([s for s, *_ in self.step_runs(env["event_id"])], ["reserve_stock"])
        node.kill()
        restarted_at = time.monotonic()
        node = self.durable_node()
        outputs = self.outputs_of(env["correlation_id"], 4)
        print(f"\n  orchestrator: completion {time.monotonic() - restarted_at:.1f} s after the restart "
              "(a 3 s step included)")
        done = [o for o in outputs if o["event_type"].endswith("workflow-completed")]
        self.assertEqual(len(done), 1)
        self.assertEqual(sorted(done[0]["payload"]["results"]), sorted(self.STEPS))
        runs = self.step_runs(env["event_id"])
        self.assertEqual([s for s, *_ in runs], self.STEPS, "each step ran once, reserve_stock before the kill")
        self.assertEqual(node.terminate(timeout=10), 0, node.tail())

    def test_9d_failing_step_retried_with_backoff(self):
        self.stop_running_nodes()
        node = self.durable_node()
        self.wait_started(node)
        env = envelope("demo.fulfil-order", {"order_id": f"order-{uuid.uuid4()}", "charge_failures": 2})
        self.client.send_envelope(self.SUBSCRIBE, env)
        outputs = self.outputs_of(env["correlation_id"], 4)
        self.assertTrue(any(o["event_type"].endswith("workflow-completed") for o in outputs))
        runs = self.step_runs(env["event_id"])
        charges = [(attempt, ms, outcome) for step, attempt, ms, outcome in runs if step == "charge_customer"]
        self.assertEqual([(a, o) for a, _, o in charges], [(0, "failed"), (1, "failed"), (2, "done")])
        # The contract's backoff: 100 ms, then 200 ms, each with 10% jitter.
        gaps = [later[1] - earlier[1] for earlier, later in zip(charges, charges[1:])]
        self.assertGreaterEqual(gaps[0], 90, gaps)
        self.assertGreaterEqual(gaps[1], 180, gaps)
        self.assertEqual([s for s, *_ in runs if s != "charge_customer"], ["reserve_stock", "book_shipping"],
                         "reserve_stock is not run again by the retries")
        self.assertEqual(node.terminate(timeout=10), 0, node.tail())

    def test_9e_always_failing_step_dead_lettered_and_announced(self):
        self.stop_running_nodes()
        node = self.durable_node()
        self.wait_started(node)
        env = envelope("demo.fulfil-order", {"order_id": f"order-{uuid.uuid4()}", "charge_failures": 99})
        raw = self.client.send_envelope(self.SUBSCRIBE, env)
        record = self.dead_letter(env["correlation_id"])
        self.check_dead_letter(record, raw, env["correlation_id"], "retriable", "payment provider", retries=3)
        (failed,) = self.outputs_of(env["correlation_id"], 1)
        self.assertEqual(failed["event_type"], "node-order-fulfilment-orchestrator.workflow-failed")
        self.assertEqual(failed["payload"]["failed_step"], "charge_customer")
        self.assertEqual(failed["payload"]["completed_steps"], ["reserve_stock"])
        self.assertEqual(failed["payload"]["retry_count"], 3)
        runs = self.step_runs(env["event_id"])
        self.assertEqual([(s, a, o) for s, a, _, o in runs],
                         [("reserve_stock", 0, "done")] + [("charge_customer", a, "failed") for a in range(4)])
        self.assertEqual(node.terminate(timeout=10), 0, node.tail())


class WindowedNode(BrokerOutages, unittest.TestCase):
    """A reducer with an aggregation window (contracts/minimal_windowed.yaml,
    2 s tumbling windows): one aggregated state per customer per window,
    durable and once-only through a SIGKILL and a broker outage."""

    NODE = "node_customer_totals_reducer"
    KIND = "reducer"
    GROUP = "node_customer_totals_reducer"
    SUBSCRIBE = "onex.evt.demo.order-placed.v1"
    TOTALS = "onex.evt.demo.customer-totals.v1"
    SNAPSHOT = "onex.snapshot.demo.node-customer-totals-reducer.v1"
    DLQ = "onex.evt.demo.order-placed.v1.dlq"
    WINDOW_MS = 2000

    @classmethod
    def setUpClass(cls):
        cls.client = Client()
        cls.nodes = []
        cls.log_dir = os.environ.get("ONEX_E2E_LOG_DIR") or None
        cls.instance = f"e2e-windowed-{uuid.uuid4()}"

    @classmethod
    def tearDownClass(cls):
        for node in cls.nodes:
            if node.proc.poll() is None and node.terminate(timeout=10) is None:
                node.kill()
        cls.client.close()

    def start(self):
        return self.start_node({"ONEX_INSTANCE_ID": self.instance})

    def start_node(self, extra_env):
        env = {
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap(),
            "KAFKA_AUTO_OFFSET_RESET": "earliest",
            "KAFKA_TIMEOUT_SECONDS": "15",
            "ONEX_HEALTH_ADDR": "127.0.0.1:0",
            "ONEX_INSTANCE_ID": f"e2e-windowed-{uuid.uuid4()}",
            "ONEX_BUS_CONNECT_TIMEOUT_SECONDS": "10",
            "RUST_LOG": "info",
            "NO_COLOR": "1",
            **extra_env,
        }
        log = os.path.join(self.log_dir, f"{self.NODE}.log") if self.log_dir else None
        node = NodeProcess(os.path.join(bin_dir(), self.NODE.replace("_", "-")), env, (), log)
        node.instance = env["ONEX_INSTANCE_ID"]
        self.nodes.append(node)
        node.wait_line(r"node running")
        return node

    def send(self, orders, client=None):
        """[(customer, amount)] as one burst of order events; their correlation ids."""
        items = [(envelope("demo.order.placed", {"aggregate_id": c, "amount": a}), c) for c, a in orders]
        (client or self.client).send_envelopes(self.SUBSCRIBE, items)
        return [env["correlation_id"] for env, _ in items]

    def wait_applied(self, customers, count, client=None):
        """Waits until `count` orders of `customers` are applied: their state
        records are on the snapshot topic."""
        snap = (client or self.client).reader(self.SNAPSHOT)
        try:
            snap.wait_all(lambda r: r.key and r.key.decode() in customers
                          and (decode(r) or {}).get("applied"), count, "state records of the orders")
        finally:
            snap.close()

    def windows_of(self, reader, customers, expected):
        """Waits until the published windows of `customers` account for
        `expected` = {customer: (orders, total)}; returns {customer: [payload]}
        by window (duplicate ids dropped) and the number of duplicates."""
        deadline = time.monotonic() + 60
        while True:
            seen, by_customer, duplicates = {}, {}, 0
            for r in reader.records:
                env = decode(r)
                payload = (env or {}).get("payload") or {}
                if payload.get("aggregate_id") not in customers:
                    continue
                if env["event_id"] in seen:
                    self.assertEqual(seen[env["event_id"]], payload, "a re-published id carries the same window")
                    duplicates += 1
                    continue
                seen[env["event_id"]] = payload
                by_customer.setdefault(payload["aggregate_id"], []).append(payload)
            last = {c: (w[-1]["state"]["orders"], w[-1]["state"]["total"]) for c, w in by_customer.items()}
            if last == expected:
                return by_customer, duplicates
            if time.monotonic() > deadline:
                raise AssertionError(f"windows published: {last}, expected {expected}")
            reader.poll()

    def check_windows(self, by_customer):
        for customer, windows in by_customer.items():
            before = None
            for w in windows:
                span = w["window"]
                self.assertEqual(span["end_ms"] - span["start_ms"], self.WINDOW_MS, w)
                self.assertEqual(span["start_ms"] % self.WINDOW_MS, 0, w)
                # Each window starts from the state the previous one ended in,
                # and counts exactly the orders it added: nothing lost, nothing twice.
                self.assertEqual(w["before"], before, f"{customer}: {windows}")
                self.assertEqual(w["state"]["orders"] - ((before or {}).get("orders") or 0),
                                 span["inputs"], f"{customer}: {windows}")
                before = w["state"]
            starts = [w["window"]["start_ms"] for w in windows]
            self.assertEqual(starts, sorted(set(starts)), f"one event per window: {customer}")

    def test_1_one_aggregated_state_per_customer_per_window(self):
        node = self.start()
        reader = self.client.reader(self.TOTALS)
        try:
            customers = [f"customer-{uuid.uuid4()}" for _ in range(3)]
            orders = [(customers[i % 3], i + 1) for i in range(30)]
            sent_at = time.monotonic()
            self.send(orders)
            expected = {c: (10, sum(a for cc, a in orders if cc == c)) for c in customers}
            by_customer, duplicates = self.windows_of(reader, set(customers), expected)
            self.assertLess(time.monotonic() - sent_at, 3 * self.WINDOW_MS / 1000 + 5)
            self.check_windows(by_customer)
            self.assertEqual(duplicates, 0)
            published = sum(len(w) for w in by_customer.values())
            self.assertLessEqual(published, 6, f"30 orders published {published} events, not one per window")
            dead = [r for r in self.client.reader(self.DLQ).drain()] if self.client.topic_exists(self.DLQ) else []
            self.assertEqual(dead, [])
        finally:
            reader.close()
        self.assertEqual(node.terminate(timeout=10), 0, node.tail())

    def test_2_open_window_survives_sigkill(self):
        node = self.start()
        reader = self.client.reader(self.TOTALS)
        try:
            customers = [f"customer-{uuid.uuid4()}" for _ in range(2)]
            orders = [(customers[i % 2], 10 + i) for i in range(40)]
            self.send(orders[:20])
            # Every order applied (the state records are on the snapshot
            # topic), none published yet: kill inside the window.
            self.wait_applied(customers, 20)
            node.kill()
            restarted = time.monotonic()
            node = self.start()
            # With no further input, the restarted node restores the
            # partition on assignment and publishes the windows it finds open.
            first = {c: (10, sum(a for cc, a in orders[:20] if cc == c)) for c in customers}
            self.windows_of(reader, set(customers), first)
            recovered = time.monotonic() - restarted
            self.send(orders[20:])
            expected = {c: (20, sum(a for cc, a in orders if cc == c)) for c in customers}
            by_customer, duplicates = self.windows_of(reader, set(customers), expected)
            self.check_windows(by_customer)
            print(f"\n  windowed reducer: the open windows published {recovered:.1f} s after the restart; "
                  f"{sum(len(w) for w in by_customer.values())} window event(s) for 40 orders; "
                  f"{duplicates} re-published duplicate(s) dropped by id")
        finally:
            reader.close()
        self.assertEqual(node.terminate(timeout=10), 0, node.tail())


    def test_3_windows_that_end_during_a_broker_outage(self):
        """Windows that end while the broker is stopped (SIGSTOP, 6 s), with
        publishes that give up after 1 s and no retry, on a broker of its
        own: their publish fails (the broker may take it all the same once
        it goes on) and is tried again, while 20 orders sent during the
        outage come in as the broker comes back, then 20 more. Every id
        carries one window, each customer's windows chain (each starts from
        the state the one before ended in, counts the orders it added, one
        event per window), the totals count every order once, nothing is
        dead-lettered, and the node is healthy after."""
        pause_s = 6
        with self.node_on_a_broker_of_its_own("windowed-outage", 15, self.SHORT_PUBLISHES) as started:
            broker, client, node = started
            reader = client.reader(self.TOTALS)
            try:
                customers = [f"customer-{uuid.uuid4()}" for _ in range(2)]
                orders = [(customers[i % 2], 100 + i) for i in range(60)]
                # Early in a window, so that it is still open when the broker
                # stops once the orders are applied.
                time.sleep((self.WINDOW_MS - time.time() * 1000 % self.WINDOW_MS + 100) / 1000)
                self.send(orders[:20], client)
                self.wait_applied(customers, 20, client)
                # The producer of the orders waits for the broker to come back.
                during = threading.Thread(target=self.send, args=(orders[20:40], client))
                os.kill(broker.pid, signal.SIGSTOP)
                try:
                    during.start()
                    time.sleep(pause_s)
                finally:
                    os.kill(broker.pid, signal.SIGCONT)
                during.join(timeout=60)
                self.send(orders[40:], client)
                expected = {c: (30, sum(a for cc, a in orders if cc == c)) for c in customers}
                by_customer, duplicates = self.windows_of(reader, set(customers), expected)
                self.check_windows(by_customer)
                dlq = client.reader(self.DLQ) if client.topic_exists(self.DLQ) else None
                dead = dlq.drain() if dlq else []
                if dlq:
                    dlq.close()
                self.assertEqual(dead, [])
                self.healthy_on_kafka(node)
                failed = sum(1 for line in node.lines if "aggregation windows stay open" in line)
                self.assertGreater(failed, 0, "no window publish failed: nothing tested\n" + node.tail())
                windows = sum(len(w) for w in by_customer.values())
                print(f"\n  windowed reducer, broker outage of {pause_s} s: {failed} failed window "
                      f"publish(es); {windows} window event(s) for 60 orders, one content per id; "
                      f"{duplicates} re-published duplicate(s) dropped by id", file=sys.stderr)
            finally:
                reader.close()
            self.assertEqual(node.terminate(timeout=15), 0, node.tail())


class RequestWorkflow(BrokerOutages, unittest.TestCase):
    """An orchestrator whose step calls an effect node over request/response
    (contracts/checkout_orchestrator.yaml, step `quote_price` with
    `step_config.effect_node: node_pricing_effect`), running the generated
    handlers unchanged; the effect node runs tests/e2e/handlers/pricing_effect.rs
    (250 cents an item). Checked from outside: the request on the effect's
    command topic, and the workflow's completion carrying the effect's answer;
    with the effect node down, the step times out (2 s) and is retried per the
    contract (2 retries), then the workflow is dead-lettered and announced as
    failed."""

    ORCHESTRATOR = "node_checkout_orchestrator"
    EFFECT = "node_pricing_effect"
    SUBSCRIBE = "onex.cmd.demo.checkout.v1"
    EFFECT_TOPIC = "onex.cmd.demo.node-pricing-effect.v1"
    PUBLISH = ["onex.evt.demo.checkout-progress.v1", "onex.evt.demo.checkout-completed.v1"]
    DLQ = "onex.cmd.demo.checkout.v1.dlq"
    REPLY_TOPIC = "onex.evt.node-checkout-orchestrator.replies.v1"

    @classmethod
    def setUpClass(cls):
        cls.client = Client()
        cls.log_dir = os.environ.get("ONEX_E2E_LOG_DIR") or None
        cls.readers = {}
        cls.effect = cls.start(cls.EFFECT)
        cls.orchestrator = cls.start(cls.ORCHESTRATOR)

    @classmethod
    def tearDownClass(cls):
        for node in (cls.effect, cls.orchestrator):
            if node.proc.poll() is None and node.terminate(timeout=10) is None:
                node.kill()
        for r in cls.readers.values():
            r.close()
        cls.client.close()

    @classmethod
    def start(cls, name, extra_env=None):
        instance = f"e2e-request-{uuid.uuid4()}"
        env = {**node_env(instance), **(extra_env or {})}
        log = os.path.join(cls.log_dir, f"{name}.log") if cls.log_dir else None
        node = NodeProcess(os.path.join(bin_dir(), name.replace("_", "-")), env, (), log)
        node.instance = instance
        node.wait_line(r"node running", timeout=60)
        return node

    def start_node(self, env):
        return self.start(self.ORCHESTRATOR, env)

    @classmethod
    def reader(cls, *topics):
        if topics not in cls.readers:
            cls.readers[topics] = cls.client.reader(*topics)
        return cls.readers[topics]

    def requests_of(self, env, count):
        """The requests the orchestrator sent to the effect for input `env`."""
        def caused(record):
            e = decode(record)
            return isinstance(e, dict) and e.get("causation_id") == env["event_id"]
        return [decode(r) for r in self.reader(self.EFFECT_TOPIC).wait_all(caused, count, "requests to the effect")]

    def test_1_the_step_gets_the_effect_nodes_answer(self):
        order = f"order-{uuid.uuid4()}"
        env = envelope("demo.checkout", {"order_id": order, "items": ["pen", "ink", "pad"]})
        env["metadata"]["trace_id"] = uuid.uuid4().hex
        self.client.send_envelope(self.SUBSCRIBE, env)
        done = self.reader(self.PUBLISH[1]).wait_for(correlated(env["correlation_id"]), "workflow completion")
        completion = decode(done)
        self.assertEqual(completion["event_type"], "node-checkout-orchestrator.workflow-completed", completion)
        quote = completion["payload"]["results"]["quote_price"]
        self.assertEqual(quote, {"order_id": order, "total_cents": 750}, "the effect node's answer")
        self.assertEqual(completion["payload"]["results"]["confirm_order"]["status"], "completed")
        # The request, as the effect node saw it: the workflow's input, its
        # own correlation, the trace and causation of the input, a reply topic.
        (request,) = self.requests_of(env, 1)
        self.assertEqual(request["event_type"], "quote")
        self.assertEqual(request["payload"], env["payload"])
        self.assertNotEqual(request["correlation_id"], env["correlation_id"])
        self.assertEqual(request["metadata"]["reply_to"], self.REPLY_TOPIC)
        self.assertEqual(request["metadata"]["trace_id"], env["metadata"]["trace_id"])
        # The effect answered on the reply topic, in the request's correlation.
        answer = decode(self.reader(self.REPLY_TOPIC).wait_for(correlated(request["correlation_id"]), "answer"))
        self.assertEqual(answer["event_type"], "node-pricing-effect.quote.completed")
        self.assertEqual(answer["payload"], quote)
        self.assertEqual(answer["causation_id"], request["event_id"])

    def test_2_with_the_effect_node_down_the_step_is_retried_then_dead_lettered(self):
        self.assertEqual(self.effect.terminate(timeout=10), 0, self.effect.tail())
        env = envelope("demo.checkout", {"order_id": f"order-{uuid.uuid4()}", "items": ["pen"]})
        sent_at = time.monotonic()
        self.client.send_envelope(self.SUBSCRIBE, env)
        record = self.reader(self.DLQ).wait_for(dead_letter_of(env["correlation_id"]), "dead letter", timeout=60)
        took = time.monotonic() - sent_at
        doc = json.loads(record.value)
        self.assertEqual(doc["original_topic"], self.SUBSCRIBE)
        self.assertEqual(doc["error_type"], "retriable")
        self.assertEqual(doc["retry_count"], 2)
        self.assertIn("request to onex.cmd.demo.node-pricing-effect.v1 failed", doc["failure_reason"])
        # One request per attempt (the first and two retries), each timing out
        # after the step's 2 s.
        requests = self.requests_of(env, 3)
        self.assertEqual(len({r["correlation_id"] for r in requests}), 3)
        self.assertGreaterEqual(took, 6.0)
        failed = decode(self.reader(self.PUBLISH[1]).wait_for(correlated(env["correlation_id"]), "failure"))
        self.assertEqual(failed["event_type"], "node-checkout-orchestrator.workflow-failed")
        self.assertEqual(failed["payload"]["failed_step"], "quote_price")
        self.assertEqual(failed["payload"]["completed_steps"], [])
        self.assertEqual(failed["payload"]["retry_count"], 2)
        print(f"\n  request: dead-lettered {took:.1f} s after the input (3 attempts of 2 s)")

    def test_3_a_step_retried_after_a_timeout_sends_the_same_request(self):
        """The effect node (back after test 2) takes 3 s over the first quote
        of an order with a `slow` item, longer than the step's 2 s: the step
        times out and is retried. The retry is the same request (one event
        id, a new correlation id), which the effect sees under the same
        idempotency key and answers from its ledger without pricing again;
        the workflow completes with that answer."""
        effect = type(self).effect = self.start(self.EFFECT)
        # A plain order first: the effect node has its partition.
        probe = envelope("demo.checkout", {"order_id": f"order-{uuid.uuid4()}", "items": ["pen"]})
        self.client.send_envelope(self.SUBSCRIBE, probe)
        self.reader(self.PUBLISH[1]).wait_for(correlated(probe["correlation_id"]), "probe completion",
                                              timeout=60)
        order = f"order-{uuid.uuid4()}"
        env = envelope("demo.checkout", {"order_id": order, "items": ["pen", "slow"]})
        self.client.send_envelope(self.SUBSCRIBE, env)
        done = decode(self.reader(self.PUBLISH[1]).wait_for(correlated(env["correlation_id"]),
                                                            "workflow completion", timeout=60))
        self.assertEqual(done["event_type"], "node-checkout-orchestrator.workflow-completed", done)
        self.assertEqual(done["payload"]["results"]["quote_price"], {"order_id": order, "total_cents": 500})
        requests = self.requests_of(env, 2)
        self.assertEqual(len({r["event_id"] for r in requests}), 1, "a retry sends the same request")
        self.assertEqual(len({r["correlation_id"] for r in requests}), len(requests),
                         "each send waits for its own answer")
        key = f"{self.EFFECT}:{requests[0]['event_id']}"
        priced = [line for line in effect.lines if "quote priced" in line and order in line]
        replayed = [line for line in effect.lines if "quote replayed" in line and order in line]
        self.assertEqual(len(priced), 1, "priced once\n" + effect.tail())
        self.assertIn(f"idempotency_key={key}", priced[0])
        self.assertTrue(replayed and all(f"idempotency_key={key}" in line for line in replayed),
                        "the retry has the key of the first request\n" + effect.tail())
        print(f"\n  request: a step retried after a timeout sent {len(requests)} requests with one id; "
              f"the effect priced once and answered {len(replayed)} from its ledger", file=sys.stderr)


    def test_4_a_step_whose_request_meets_a_broker_outage(self):
        """Both nodes on a broker of their own, with publishes that give up
        after 1 s and no retry (15 s session). The broker stops (SIGSTOP)
        for 6 s as the effect starts a 3 s quote: the step's wait times out,
        and its retry cannot publish the request. That is the bus's fault,
        not the step's: the input is delivered again, where before the
        contract's 2 retries ran out within the outage and the workflow was
        dead-lettered. The workflow completes with the effect's answer, the
        effect priced the order once, and nothing is dead-lettered."""
        pause_s = 6
        settings = dict(self.SHORT_PUBLISHES)
        with self.node_on_a_broker_of_its_own("request-outage", 15, settings) as started:
            broker, client, orchestrator = started
            effect = self.start(self.EFFECT, {**settings, "KAFKA_BOOTSTRAP_SERVERS": broker.address,
                                              "KAFKA_SESSION_TIMEOUT_MS": "15000"})
            completions = client.reader(self.PUBLISH[1])
            try:
                # A plain order first: the effect node has its partition.
                probe = envelope("demo.checkout", {"order_id": f"order-{uuid.uuid4()}", "items": ["pen"]})
                client.send_envelope(self.SUBSCRIBE, probe)
                completions.wait_for(correlated(probe["correlation_id"]), "probe completion", timeout=60)
                order = f"order-{uuid.uuid4()}"
                env = envelope("demo.checkout", {"order_id": order, "items": ["pen", "slow"]})
                client.send_envelope(self.SUBSCRIBE, env)
                effect.wait_line(rf"quote correlation_id=\S+ order_id={order}")
                self.pause(broker, pause_s)
                done = decode(completions.wait_for(correlated(env["correlation_id"]), "workflow end",
                                                   timeout=90))
                self.assertEqual(done["event_type"], "node-checkout-orchestrator.workflow-completed",
                                 f"{done}\n{orchestrator.tail()}")
                self.assertEqual(done["payload"]["results"]["quote_price"],
                                 {"order_id": order, "total_cents": 500})
                if client.topic_exists(self.DLQ):
                    dlq = client.reader(self.DLQ)
                    letters = [r for r in dlq.drain(timeout=10)
                               if headers_dict(r).get("correlation_id") == env["correlation_id"]]
                    dlq.close()
                    self.assertEqual(letters, [], "the workflow was dead-lettered")
                priced = [line for line in effect.lines if "quote priced" in line and order in line]
                self.assertEqual(len(priced), 1, "priced once\n" + effect.tail())
                waited = sum(1 for line in orchestrator.lines if "delivered again once the bus is back" in line)
                self.assertGreater(waited, 0, "no request met the stopped broker: nothing tested\n"
                                   + orchestrator.tail())
                print(f"\n  request, broker outage of {pause_s} s: the workflow completed; its input "
                      f"delivered again {waited} time(s) while the request could not be published; "
                      f"the effect priced once", file=sys.stderr)
            finally:
                completions.close()
                if effect.proc.poll() is None:
                    effect.kill()
            self.assertEqual(orchestrator.terminate(timeout=15), 0, orchestrator.tail())


def durable_env(instance, extra=None):
    """Settings of a node restarted under the same identity. Group membership
    is the runtime's default (dynamic, 6 s session): tansu 0.6.0 evicts static
    members (see the README), so the restarted process joins as a new member
    and gets the partition once the killed member's session has expired."""
    env = {"ONEX_INSTANCE_ID": instance}
    env.update(extra or {})
    return env


KINDS = {
    "effect": EffectNode,
    "compute": ComputeNode,
    "reducer": ReducerNode,
    "orchestrator": OrchestratorNode,
    "windowed": WindowedNode,
    "request": RequestWorkflow,
}
