"""An outside Kafka client (kafka-python) for the runtime's broker tests.

    python outside_client.py produce TOPIC RECORD   writes one record; RECORD is
        {"key": HEX or null, "value": HEX, "headers": [[NAME, HEX], ...]}, the
        headers sent exactly in that order
    python outside_client.py read TOPIC             prints every record of TOPIC,
        from the beginning of each partition to its end, one JSON object a line
        (keys, values and header values in hex, headers in the record's order)

The broker is ONEX_TEST_KAFKA.
"""

import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "e2e"))

from onex_e2e import Client, Reader, bootstrap, record_json  # noqa: E402


def unhex(text):
    return None if text is None else bytes.fromhex(text)


def produce(topic, record):
    client = Client()
    try:
        headers = [(name, unhex(value)) for name, value in record["headers"]]
        client.send_raw(topic, unhex(record["value"]), headers, unhex(record["key"]))
    finally:
        client.close()


def read(topic):
    reader = Reader(bootstrap(), [topic])
    try:
        for r in reader.drain():
            print(record_json(r))
    finally:
        reader.close()


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "produce":
        produce(sys.argv[2], json.loads(sys.argv[3]))
    elif len(sys.argv) == 3 and sys.argv[1] == "read":
        read(sys.argv[2])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
