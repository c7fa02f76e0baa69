"""Prints every record of the given topics as an outside Kafka client
(kafka-python, no consumer group) reads them: from the beginning of each
partition to its end at the time of the call, one JSON object a line, keys,
values and header values in hex.

    python read_topics.py TOPIC...     (broker: ONEX_TEST_KAFKA)
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "e2e"))

from onex_e2e import Reader, bootstrap, record_json  # noqa: E402


def main():
    topics = sys.argv[1:]
    if not topics:
        sys.exit("usage: read_topics.py TOPIC...")
    reader = Reader(bootstrap(), topics)
    try:
        for r in reader.drain():
            print(record_json(r))
    finally:
        reader.close()


if __name__ == "__main__":
    main()
