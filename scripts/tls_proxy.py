"""A TLS-terminating TCP proxy for tests: clients speak TLS to LISTEN, the
proxy speaks plain TCP to TARGET. Put in front of a Kafka-protocol broker
that advertises LISTEN, it lets clients reach the broker over TLS.

    python3 tls_proxy.py --listen 127.0.0.1:9093 --target 127.0.0.1:9092 \
        --cert server.pem --key server.key [--client-ca ca.pem]

With --client-ca, clients must present a certificate signed by that CA.
Prints "listening on HOST:PORT" once it accepts connections; stops on
SIGTERM or SIGINT. Standard library only.
"""
import argparse
import asyncio
import signal
import ssl
import sys


def host_port(text):
    host, _, port = text.rpartition(":")
    return host, int(port)


async def pipe(reader, writer):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
        pass
    finally:
        try:
            writer.close()
        except (ConnectionError, ssl.SSLError, RuntimeError):
            pass


async def serve_until_stopped(handle, listen, ssl_context=None):
    """Serves connections on LISTEN with HANDLE until SIGTERM or SIGINT."""
    listen_host, listen_port = host_port(listen)
    server = await asyncio.start_server(handle, listen_host, listen_port, ssl=ssl_context)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"listening on {listen}", flush=True)
    async with server:
        await stop.wait()


async def serve(args):
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(args.cert, args.key)
    if args.client_ca:
        context.load_verify_locations(args.client_ca)
        context.verify_mode = ssl.CERT_REQUIRED
    target_host, target_port = host_port(args.target)

    async def handle(client_reader, client_writer):
        try:
            broker_reader, broker_writer = await asyncio.open_connection(target_host, target_port)
        except OSError as e:
            print(f"cannot reach {args.target}: {e}", file=sys.stderr, flush=True)
            client_writer.close()
            return
        await asyncio.gather(pipe(client_reader, broker_writer), pipe(broker_reader, client_writer))

    await serve_until_stopped(handle, args.listen, context)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True, help="HOST:PORT clients connect to with TLS")
    parser.add_argument("--target", required=True, help="HOST:PORT of the plain-TCP server")
    parser.add_argument("--cert", required=True, help="PEM certificate chain of the proxy")
    parser.add_argument("--key", required=True, help="PEM private key of the proxy")
    parser.add_argument("--client-ca", help="require client certificates signed by this CA")
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
