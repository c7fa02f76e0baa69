"""A SASL-checking TCP proxy for tests: clients must log in to LISTEN with
SASL PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 as one of the given users before
the proxy relays anything but ApiVersions to the Kafka-protocol broker at
TARGET. It checks passwords the way a Kafka broker does, which tansu 0.6.0
built with in-memory storage cannot (its PLAIN is not built in, and it keeps
no SCRAM credential), so that a login can be shown to succeed with the right
password and to fail with a wrong one.

    python3 sasl_proxy.py --listen 127.0.0.1:9094 --target 127.0.0.1:9092 \
        --user alice:alice-secret [--user bob:...]

Answers SaslHandshake (v0-v1) and SaslAuthenticate (v0-v1) itself; any other
request before a successful login closes the connection, as a broker
requiring authentication does. Put scripts/tls_proxy.py in front of it for
sasl_ssl. Prints "listening on HOST:PORT" once it accepts connections; stops
on SIGTERM or SIGINT. Standard library only.
"""
import argparse
import asyncio
import base64
import hashlib
import hmac
import os
import struct
import sys

from tls_proxy import host_port, pipe, serve_until_stopped

API_SASL_HANDSHAKE = 17
API_VERSIONS = 18
API_SASL_AUTHENTICATE = 36
ERROR_UNSUPPORTED_SASL_MECHANISM = 33
ERROR_SASL_AUTHENTICATION_FAILED = 58
SCRAM_HASHES = {"SCRAM-SHA-256": hashlib.sha256, "SCRAM-SHA-512": hashlib.sha512}
MECHANISMS = ["PLAIN", *SCRAM_HASHES]
SCRAM_ITERATIONS = 4096


class LoginFailed(Exception):
    pass


def kafka_string(text):
    if text is None:
        return struct.pack(">h", -1)
    data = text.encode()
    return struct.pack(">h", len(data)) + data


def kafka_bytes(data):
    return struct.pack(">i", len(data)) + data


async def read_frame(reader):
    size = struct.unpack(">i", await reader.readexactly(4))[0]
    return await reader.readexactly(size)


def frame(correlation_id, body):
    payload = struct.pack(">i", correlation_id) + body
    return struct.pack(">i", len(payload)) + payload


class Request:
    """A request with header v1: api key, version, correlation id, client id."""

    def __init__(self, data):
        self.data = data
        self.api_key, self.api_version, self.correlation_id = struct.unpack(">hhi", data[:8])
        client_id_len = struct.unpack(">h", data[8:10])[0]
        self.body = data[10 + max(client_id_len, 0):]

    def string(self):
        length = struct.unpack(">h", self.body[:2])[0]
        return self.body[2:2 + length].decode()

    def bytes(self):
        length = struct.unpack(">i", self.body[:4])[0]
        return self.body[4:4 + length]


def scram_attributes(message):
    return dict(part.split("=", 1) for part in message.split(","))


class Scram:
    """The server side of RFC 5802 for one login."""

    def __init__(self, mechanism, users):
        self.hash = SCRAM_HASHES[mechanism]
        self.users = users
        self.step = self.client_first

    def client_first(self, message):
        parts = message.split(",", 2)
        if len(parts) != 3 or parts[0] not in ("n", "y"):
            raise LoginFailed("malformed client-first message")
        self.gs2_header = parts[0] + "," + parts[1] + ","
        self.client_first_bare = parts[2]
        attrs = scram_attributes(self.client_first_bare)
        user = attrs.get("n", "").replace("=2C", ",").replace("=3D", "=")
        self.password = self.users.get(user)
        self.nonce = attrs.get("r", "") + base64.b64encode(os.urandom(18)).decode()
        self.salt = os.urandom(16)
        self.server_first = f"r={self.nonce},s={base64.b64encode(self.salt).decode()},i={SCRAM_ITERATIONS}"
        self.step = self.client_final
        # An unknown user gets the full exchange and fails at the proof, as
        # Kafka does, so that logins do not reveal which users exist.
        return self.server_first

    def client_final(self, message):
        without_proof, _, proof = message.rpartition(",p=")
        attrs = scram_attributes(without_proof)
        if attrs.get("r") != self.nonce:
            raise LoginFailed("nonce mismatch")
        if base64.b64decode(attrs.get("c", "")) != self.gs2_header.encode():
            raise LoginFailed("channel binding mismatch")
        if self.password is None:
            raise LoginFailed("authentication failed")
        salted = hashlib.pbkdf2_hmac(self.hash().name, self.password.encode(), self.salt, SCRAM_ITERATIONS)
        client_key = hmac.new(salted, b"Client Key", self.hash).digest()
        stored_key = self.hash(client_key).digest()
        auth_message = f"{self.client_first_bare},{self.server_first},{without_proof}".encode()
        signature = hmac.new(stored_key, auth_message, self.hash).digest()
        given = base64.b64decode(proof)
        if len(given) != len(signature):
            raise LoginFailed("authentication failed")
        recovered = bytes(a ^ b for a, b in zip(given, signature))
        if not hmac.compare_digest(self.hash(recovered).digest(), stored_key):
            raise LoginFailed("authentication failed")
        server_key = hmac.new(salted, b"Server Key", self.hash).digest()
        server_signature = hmac.new(server_key, auth_message, self.hash).digest()
        self.step = None
        return "v=" + base64.b64encode(server_signature).decode()


class Plain:
    """RFC 4616: one message, authzid NUL authcid NUL password."""

    def __init__(self, users):
        self.users = users
        self.step = self.check

    def check(self, message):
        parts = message.split("\0")
        if len(parts) != 3:
            raise LoginFailed("malformed PLAIN message")
        _, user, password = parts
        expected = self.users.get(user)
        if expected is None or not hmac.compare_digest(expected.encode(), password.encode()):
            raise LoginFailed("authentication failed")
        self.step = None
        return ""


def authenticate_response(version, error_code, message, auth_bytes):
    body = struct.pack(">h", error_code) + kafka_string(message) + kafka_bytes(auth_bytes)
    if version >= 1:
        body += struct.pack(">q", 0)
    return body


async def login(client_reader, client_writer, broker_reader, broker_writer, users, log):
    """Runs the connection until a login succeeds (returns True) or the
    client must be dropped (returns False)."""
    session = None
    while True:
        try:
            request = Request(await read_frame(client_reader))
        except (asyncio.IncompleteReadError, ConnectionError):
            return False
        if request.api_key == API_VERSIONS:
            broker_writer.write(struct.pack(">i", len(request.data)) + request.data)
            await broker_writer.drain()
            response = await read_frame(broker_reader)
            client_writer.write(struct.pack(">i", len(response)) + response)
        elif request.api_key == API_SASL_HANDSHAKE and request.api_version <= 1:
            mechanism = request.string()
            error = 0
            if mechanism == "PLAIN":
                session = Plain(users)
            elif mechanism in SCRAM_HASHES:
                session = Scram(mechanism, users)
            else:
                session = None
                error = ERROR_UNSUPPORTED_SASL_MECHANISM
            body = struct.pack(">h", error) + struct.pack(">i", len(MECHANISMS))
            body += b"".join(kafka_string(m) for m in MECHANISMS)
            client_writer.write(frame(request.correlation_id, body))
        elif request.api_key == API_SASL_AUTHENTICATE and request.api_version <= 1 and session:
            try:
                answer = session.step(request.bytes().decode())
            except (LoginFailed, ValueError, UnicodeDecodeError) as e:
                log(f"login refused: {e}")
                body = authenticate_response(
                    request.api_version, ERROR_SASL_AUTHENTICATION_FAILED, f"Authentication failed: {e}", b""
                )
                client_writer.write(frame(request.correlation_id, body))
                await client_writer.drain()
                return False
            body = authenticate_response(request.api_version, 0, None, answer.encode())
            client_writer.write(frame(request.correlation_id, body))
            if session.step is None:
                await client_writer.drain()
                return True
        else:
            log(f"request {request.api_key} v{request.api_version} before login: closing")
            return False
        await client_writer.drain()


async def serve(args):
    users = dict(u.split(":", 1) for u in args.user)
    target_host, target_port = host_port(args.target)

    def log(text):
        print(text, file=sys.stderr, flush=True)

    async def handle(client_reader, client_writer):
        try:
            broker_reader, broker_writer = await asyncio.open_connection(target_host, target_port)
        except OSError as e:
            log(f"cannot reach {args.target}: {e}")
            client_writer.close()
            return
        if await login(client_reader, client_writer, broker_reader, broker_writer, users, log):
            await asyncio.gather(pipe(client_reader, broker_writer), pipe(broker_reader, client_writer))
        else:
            client_writer.close()
            broker_writer.close()

    await serve_until_stopped(handle, args.listen)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True, help="HOST:PORT clients log in to")
    parser.add_argument("--target", required=True, help="HOST:PORT of the broker")
    parser.add_argument("--user", action="append", required=True, help="USER:PASSWORD allowed to log in")
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
