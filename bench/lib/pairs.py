#!/usr/bin/env python3
"""Runs commands alternately under /usr/bin/time and prints their medians.

    pairs.py --runs N [--warmup W] [--title T] \\
        --case NAME 'PREPARE' 'COMMAND' [--case NAME 'PREPARE' 'COMMAND' ...]

Each round runs every case once, in the order given (so the cases of one
round see the same machine load); PREPARE runs untimed before its COMMAND
(use '' for none). Both are shell commands. COMMAND is timed by GNU time
(Debian package `time`): wall time, CPU time (user + system, the process and
every child it waited for) and peak memory (largest resident set of the
process or of any one child it waited for).

Prints one markdown table: the median of each figure, and each case's
ratio to the first case (this case / first case: "40.0x" wall means the
first case took a fortieth of the time). The raw figures of every run go to
stderr.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile

TIME = "/usr/bin/time"


def shell(command):
    """A lone command replaces the shell (its figures are its own); a list of
    commands runs under it."""
    return command if any(op in command for op in ("&&", ";", "|")) else "exec " + command


def run_once(prepare, command):
    if prepare:
        subprocess.run(["bash", "-c", prepare], check=True)
    with tempfile.NamedTemporaryFile("r", suffix=".time") as out:
        proc = subprocess.run(
            [TIME, "-f", "%e %U %S %M", "-o", out.name, "bash", "-c", shell(command)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        if proc.returncode != 0:
            sys.stderr.write(proc.stderr.decode(errors="replace")[-4000:])
            raise SystemExit(f"command failed ({proc.returncode}): {command}")
        fields = out.read().strip().splitlines()[-1].split()
    wall, user, system, rss_kb = (float(f) for f in fields)
    return {"wall": wall, "cpu": user + system, "rss": rss_kb / 1024}


def fmt_time(s):
    return f"{s * 1000:.0f} ms" if s < 1 else f"{s:.2f} s"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--title", default="")
    ap.add_argument("--case", nargs=3, action="append", metavar=("NAME", "PREPARE", "COMMAND"), required=True)
    args = ap.parse_args()
    if not os.access(TIME, os.X_OK):
        raise SystemExit(f"{TIME} not found: apt-get install time")

    cases = args.case
    for _ in range(args.warmup):
        for _, prepare, command in cases:
            run_once(prepare, command)
    results = {name: [] for name, _, _ in cases}
    for i in range(args.runs):
        for name, prepare, command in cases:
            r = run_once(prepare, command)
            results[name].append(r)
            print(
                f"run {i + 1}/{args.runs} {name}: wall {r['wall']:.3f} s, cpu {r['cpu']:.3f} s, rss {r['rss']:.1f} MiB",
                file=sys.stderr,
            )

    med = {
        name: {k: statistics.median(r[k] for r in rs) for k in ("wall", "cpu", "rss")}
        for name, rs in results.items()
    }
    first = cases[0][0]
    if args.title:
        print(f"\n{args.title}\n")
    print(f"medians of {args.runs} alternating runs\n")
    print("| case | wall | CPU (user+sys) | peak RSS | wall ratio | CPU ratio | memory ratio |")
    print("|---|---|---|---|---|---|---|")
    for name, _, _ in cases:
        m, f = med[name], med[first]
        print(
            f"| {name} | {fmt_time(m['wall'])} | {fmt_time(m['cpu'])} | {m['rss']:.1f} MiB"
            f" | {m['wall'] / f['wall']:.1f}x | {m['cpu'] / max(f['cpu'], 1e-3):.1f}x | {m['rss'] / f['rss']:.2f}x |"
        )
    print()
    for name, _, command in cases:
        print(f"- {name}: `{command}`")


if __name__ == "__main__":
    main()
