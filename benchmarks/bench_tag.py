"""Throughput and peak memory of `unitrans tag` on a plain-text file, one run per `--batch-lines` value.

Runs the real command (`python -m unitrans tag`) in a child process per setting, output to /dev/null,
and reports the command's own stderr line (lines, words, tagging seconds, words/s, model load time), the
wall time of the whole process (start-up and reading included) and its peak resident memory, with the
machine's load average before and after. Bring your own model and text; nothing is embedded here, e.g.

    python benchmarks/bench_tag.py --model /tmp/tagbench/model --text /tmp/tagbench/es10k.txt

(train the model with `unitrans train`, the text is any file with one sentence per line). Heavy: run it
alone, e.g. under `flock /tmp/unitrans-heavy.lock`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STATS = re.compile(
    r"tagged (?P<lines>\d+) lines, (?P<words>\d+) words in (?P<seconds>[\d.]+) s "
    r"\((?P<rate>\d+) words/s; model loaded in (?P<load>[\d.]+) s\)"
)


def run_once(
    model: Path, text: Path, batch_lines: int, fmt: str, threads: int, processes: int
) -> dict[str, object]:
    """One `unitrans tag` process; its stats line parsed, wall seconds and peak RSS (MiB) added."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    cmd = [sys.executable, "-m", "unitrans", "tag", "--model", str(model), "--batch-lines", str(batch_lines),
           "--format", fmt, "--processes", str(processes), str(text)]  # fmt: skip
    started = time.perf_counter()
    with open(os.devnull, "wb") as sink, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=sink, stderr=err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage: its peak memory
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - started
        err.seek(0)
        stderr = err.read()
    if proc.returncode != 0:
        sys.exit(f"unitrans tag failed ({proc.returncode}): {stderr.strip()}")
    match = STATS.search(stderr)
    if match is None:
        sys.exit(f"no stats line in: {stderr.strip()}")
    peak_mib = usage.ru_maxrss / 1024  # KiB on Linux
    row: dict[str, object] = {"batch_lines": batch_lines, "format": fmt, "threads": threads,
                              "processes": processes}  # fmt: skip
    row.update({k: float(v) if "." in v else int(v) for k, v in match.groupdict().items()})
    row.update({"wall_seconds": round(wall, 2), "peak_rss_mib": round(peak_mib)})
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="Checkpoint folder (or stage folder).")
    parser.add_argument("--text", type=Path, required=True, help="Plain text, one sentence per line.")
    parser.add_argument("--batch-lines", type=int, nargs="+", default=[256], help="Settings to time.")
    parser.add_argument("--format", default="json", choices=["json", "conll"])
    parser.add_argument("--threads", type=int, default=0, help="Torch threads (default: all cores).")
    parser.add_argument("--processes", type=int, nargs="+", default=[0],
                        help="`unitrans tag --processes` settings to time (0 = one per thread).")  # fmt: skip
    args = parser.parse_args()
    threads = args.threads or len(os.sched_getaffinity(0))
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    for size in sorted(args.batch_lines):
        for processes in args.processes:
            row = run_once(args.model, args.text, size, args.format, threads, processes)
            print(json.dumps(row), flush=True)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
