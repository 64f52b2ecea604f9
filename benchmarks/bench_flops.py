"""How close does prediction run to the CPU's own fp32 matrix-multiply speed?

If the tagger's forward pass already runs near what this CPU's fp32 matmul kernels can do, no software
change short of doing less arithmetic (or a lower-precision path the CPU runs natively) makes a run much
faster. Measured on one thread:

* peak: torch fp32 matmuls of the encoder's own shapes (tokens × hidden @ hidden × intermediate and back),
  best of several repetitions, in GFLOP/s;
* prediction: the tagger predicting the first N English dev sentences as `unitrans` does (fp32), timed;
  then the same pass again with forward hooks that count the multiply-adds of every `nn.Linear` (the rows
  it really saw, padding included) and of attention's two batched products, so achieved GFLOP/s =
  counted FLOPs / the unhooked pass's time. E.g.

    python benchmarks/bench_flops.py --model runs/quick/cache/model/<key>/model \\
        --dev ../shared/data/conll/en/dev.txt --sentences 1000

(any tagger folder; `runs/quick/runs.json` names Θsrc's). Only English dev is read: no target data.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from unitrans.data.conll import read_conll
from unitrans.model.predict import checkpoint_max_length, predict_loaded
from unitrans.model.tagger import load_tagger


def matmul_gflops(rows: int, inner: int, outer: int, repeats: int = 20) -> float:
    """Best-of-`repeats` fp32 GFLOP/s of a (rows × inner) @ (inner × outer) product."""
    a, b = torch.randn(rows, inner), torch.randn(inner, outer)
    torch.mm(a, b)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - started)
    return 2 * rows * inner * outer / best / 1e9


class FlopCounter:
    """Multiply-adds × 2 of every Linear, plus attention's QKᵀ and AV (rows × seq × head dim each)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.flops = 0
        self.handles = [
            m.register_forward_hook(self._linear) for m in model.modules() if isinstance(m, torch.nn.Linear)
        ]

    def _linear(
        self, module: torch.nn.Linear, inputs: tuple[torch.Tensor, ...], output: torch.Tensor
    ) -> None:
        rows = inputs[0].numel() // module.in_features
        self.flops += 2 * rows * module.in_features * module.out_features
        if getattr(module, "_attn_query", False):
            batch, seq = inputs[0].shape[:2]
            self.flops += 2 * 2 * batch * seq * seq * module.out_features  # QKᵀ and AV over all heads

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()


def mark_queries(model: torch.nn.Module) -> int:
    """Flag each attention block's query projection (one per layer) for the attention FLOPs."""
    marked = 0
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and name.split(".")[-1] in ("query", "q_proj"):
            module._attn_query = True  # type: ignore[attr-defined]
            marked += 1
    return marked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="a tagger folder")
    parser.add_argument("--dev", type=Path, required=True, help="English dev, CoNLL columns")
    parser.add_argument("--sentences", type=int, default=1000, help="the first N dev sentences")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model, tokenizer = load_tagger(args.model)
    model = model.float().eval()
    config = getattr(model, "config", None)
    hidden = int(getattr(config, "hidden_size", 384))
    inner = int(getattr(config, "intermediate_size", 4 * hidden))
    for rows in (512, 2048):
        up, down = matmul_gflops(rows, hidden, inner), matmul_gflops(rows, inner, hidden)
        print(
            f"peak fp32 matmul, {rows} rows: "
            f"{hidden}x{inner} {up:.1f} GFLOP/s, {inner}x{hidden} {down:.1f} GFLOP/s"
        )
    sentences = read_conll(args.dev)[: args.sentences]
    words = sum(len(s) for s in sentences)
    max_length = checkpoint_max_length(args.model, model)
    predict_loaded(model, tokenizer, sentences[:50], max_length=max_length, progress=False, bf16=False)
    started = time.perf_counter()
    predict_loaded(model, tokenizer, sentences, max_length=max_length, progress=False, bf16=False)
    seconds = time.perf_counter() - started
    layers = mark_queries(model)
    counter = FlopCounter(model)
    predict_loaded(model, tokenizer, sentences, max_length=max_length, progress=False, bf16=False)
    counter.close()
    achieved = counter.flops / seconds / 1e9
    print(
        f"prediction: {len(sentences)} sentences, {words} words in {seconds:.1f} s "
        f"({words / seconds:.0f} words/s), "
        f"{counter.flops / 1e12:.3f} TFLOP counted ({layers} attention layers), {achieved:.1f} GFLOP/s"
    )


if __name__ == "__main__":
    main()
