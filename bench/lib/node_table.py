#!/usr/bin/env python3
"""Turns the RESULT lines bench/node.sh collected into a markdown table.

    node_table.py RAW MACHINE SETTINGS

RAW lines: `SERVICE ROUND KIND RESULT key=value ... [key=value ...]`.
Medians over rounds; ratios against the hand-written service when it ran.
A latency quantile that falls on a request not answered before the drain
time ran out shows as "not all answered".
"""

import statistics
import sys


def num(v):
    try:
        return float(v.lstrip("<="))
    except (AttributeError, ValueError):
        return float("inf")


def main():
    raw, machine, settings = sys.argv[1:4]
    runs = {}
    for line in open(raw):
        parts = line.split()
        if len(parts) < 4:
            continue
        service, _round, kind = parts[:3]
        fields = dict(p.split("=", 1) for p in parts[3:] if "=" in p)
        runs.setdefault((service, kind), []).append(fields)
    services = list(dict.fromkeys(s for s, _ in runs))

    def med(service, kind, key):
        vals = [num(r.get(key)) for r in runs.get((service, kind), []) if key in r]
        return statistics.median(vals) if vals else None

    def show(v, unit=""):
        if v is None:
            return "n/a"
        if v == float("inf"):
            return "not all answered"
        return f"{v:,.0f}{unit}" if v >= 100 else f"{v:.1f}{unit}"

    base = "handwritten" if "handwritten" in services else services[0]
    print(f"machine: {machine}")
    print(f"settings: {settings}\n")
    print("| service | throughput (answers/s) | vs hand-written | latency p50 | p99 | p99 vs hand-written |"
          " at fixed rate: answered | e2e p95 | e2e p99 | request publish p95 | node publish p95 (histogram) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for s in services:
        tput = med(s, "throughput", "rate")
        btput = med(base, "throughput", "rate")
        p50 = med(s, "latency", "e2e_p50_ms")
        p99 = med(s, "latency", "e2e_p99_ms")
        bp99 = med(base, "latency", "e2e_p99_ms")
        rate_runs = runs.get((s, "rate"), [])
        answered = "/".join(f"{r.get('answered')}/{r.get('events')}" for r in rate_runs) or "n/a"
        node_p95 = rate_runs[-1].get("node_publish_p95_ms", "n/a") if rate_runs else "n/a"
        node_p95 = "n/a" if node_p95 == "n/a" else f"{node_p95} ms"
        print(
            f"| {s} | {show(tput)} | {tput / btput:.2f}x |" if tput and btput else f"| {s} | {show(tput)} | n/a |",
            end="",
        )
        print(
            f" {show(p50, ' ms')} | {show(p99, ' ms')} | "
            + (f"{p99 / bp99:.2f}x" if p99 and bp99 and p99 != float('inf') else "n/a")
            + f" | {answered} | {show(med(s, 'rate', 'e2e_p95_ms'), ' ms')} | {show(med(s, 'rate', 'e2e_p99_ms'), ' ms')}"
            + f" | {show(med(s, 'rate', 'publish_p95_ms'), ' ms')} | {node_p95} |"
        )


if __name__ == "__main__":
    main()
