"""Replay a multi-language paper run's stage graph through the real scheduler, with measured stage times.

Why: a four-language paper run takes over two hours of this CPU; how its stages pack onto the workers
can be seen in seconds. Each stage sleeps its measured time divided by `--speed` in a thread standing
in for a worker (`StagePool.run_graph`, the same scheduling code as a run, with a thread executor), so
the printed wall time is an estimate of the run's, not a measurement. The stages and their needs mirror
`pipeline.graph.stage_graph` for the variants src, trans, teach, unitrans, one seed: Θsrc, a translation
per language, Θtrans and Θteach, their probabilities on D_T, the student, the test predictions.

Default times are the Norwegian paper run's (2026-12-07, `benchmarks/README.md`, "Parts of a batch in
processes"): Θsrc 857 s (one thread), translation 329 s, Θtrans 894 s, Θteach 907 s, a teacher on D_T
120 s, a test set 18 s, the student 560 s alone in two parts and `--student-in-slot` s in one slot
(16m21s measured for the one-thread student). `--policy lone` replays the scheduler as it was before
flexible students (a split student always waited to run alone):

    python benchmarks/schedule_replay.py --targets es nl de no
    python benchmarks/schedule_replay.py --targets es nl de no --policy lone
"""

from __future__ import annotations

import argparse
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from unittest import mock


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", nargs="+", default=["es", "nl", "de", "no"])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--speed", type=float, default=400.0, help="Replay this many times faster.")
    parser.add_argument("--policy", choices=("flexible", "lone"), default="flexible")
    parser.add_argument("--src", type=float, default=857, help="0: Θsrc cached.")
    parser.add_argument("--translate", type=float, default=329)
    parser.add_argument("--trans", type=float, default=894)
    parser.add_argument("--teach", type=float, default=907)
    parser.add_argument("--dt", type=float, default=120)
    parser.add_argument("--test", type=float, default=18)
    parser.add_argument("--student-alone", type=float, default=560)
    parser.add_argument("--student-in-slot", type=float, default=981)
    args = parser.parse_args()

    from unitrans.pipeline.parallel import GraphTask, StagePool

    busy = {"seconds": 0.0}
    lock = threading.Lock()

    def task(ident: tuple, needs: tuple, seconds: float, **flags) -> GraphTask:
        def call(ctx: object, alone: bool = True) -> str:
            took = seconds if not flags.get("flexible") or alone else args.student_in_slot
            time.sleep(took / args.speed)
            with lock:
                busy["seconds"] += took * (args.workers if flags.get("threads") and alone else 1)
            return "done"

        return GraphTask(ident, needs, lambda: (call, lambda rec: None), **flags)

    lone = {"threads": args.workers, "flexible": args.policy == "flexible", "heavy": True}
    tasks = [task(("src",), (), args.src, heavy=True)]
    tasks += [task(("translate", lg), (), args.translate, heavy=True) for lg in args.targets]
    for lg in sorted(args.targets):
        tasks.append(task((lg, "teach"), (("translate", lg), ("src",)), args.teach, heavy=True))
        tasks.append(task((lg, "trans"), (("translate", lg),), args.trans, heavy=True))
    for lg in args.targets:
        tasks += [
            task(("dt", lg, k), ((k,) if k == "src" else (lg, k),), args.dt)
            for k in ("src", "trans", "teach")
        ]
    for lg in args.targets:
        tasks.append(task(("student", lg), tuple(("dt", lg, k) for k in ("src", "trans", "teach")),
                          args.student_alone, **lone))  # fmt: skip
    for lg in args.targets:
        for k in ("src", "trans", "teach"):
            tasks.append(task(("test", lg, k), ((k,) if k == "src" else (lg, k),), args.test))
        tasks.append(task(("test", lg, "unitrans"), (("student", lg),), args.test))

    pool = ThreadPoolExecutor(args.workers)  # threads stand in for the worker processes
    threads = SimpleNamespace(
        slots=args.workers,
        submit=lambda call, label, threads=0: pool.submit(call, None),
        result=lambda future, unfinished: future.result(),
        close=pool.shutdown,
    )
    ctx = SimpleNamespace(adopt=lambda rec: rec, config=None)
    with (
        mock.patch.object(StagePool, "_cached", lambda self, call: None),
        mock.patch("unitrans.pipeline.stages.call_label", lambda call, config: "stage"),
    ):
        started = time.perf_counter()
        StagePool(ctx, args.workers, executor=threads).run_graph(tasks)
        wall = (time.perf_counter() - started) * args.speed
        pool.shutdown()
    print(f"{len(args.targets)} target(s), policy {args.policy}: about {wall / 60:.1f} min "
          f"(cores busy {busy['seconds'] / (wall * args.workers):.0%})")  # fmt: skip


if __name__ == "__main__":
    main()
