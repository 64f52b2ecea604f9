"""Would int8 prediction make CPUs without native bf16 fast enough? fp32 against int8 dynamic quantization.

On a CPU without AVX-512 BF16 or AMX unitrans predicts in fp32, and the teachers' passes over the unlabelled
text take about a third of the quick preset's time there. torch's dynamic int8 quantization of the linear
layers is the usual cheap speed-up for such CPUs, so this measures what it costs on *English dev* with a
tagger trained on English (source side only: no target label is read): one-thread prediction time, entity
F1 after constrained Viterbi, and agreement of the probabilities with fp32. Three settings: fp32 (what
unitrans does), int8 with one scale per weight matrix on every linear layer, and int8 with one scale per
output channel on the encoder's linear layers only (the head stays fp32). E.g.

    python benchmarks/bench_int8.py --model runs/quick/cache/model/<key>/model \
        --dev ../shared/data/conll/en/dev.txt --sentences 1000

(the Θsrc folder named in `runs/quick/runs.json`). `torch.ao.quantization` is deprecated in torch 2.13,
so unitrans would not build on it without a large gain; the figures are in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch.ao.quantization import default_dynamic_qconfig, per_channel_dynamic_qconfig, quantize_dynamic

from unitrans.data.conll import read_conll
from unitrans.eval.metrics import entity_scores
from unitrans.model.predict import checkpoint_max_length, model_labels, predict_loaded
from unitrans.model.tagger import load_tagger
from unitrans.model.viterbi import decode_tags


def quantized(model: torch.nn.Module, setting: str) -> torch.nn.Module:
    """The model as `setting` runs it: fp32 unchanged, or its linear layers int8 (dynamic activations)."""
    if setting == "fp32":
        return model
    linear = {name for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    if setting == "int8-tensor":
        spec = {name: default_dynamic_qconfig for name in linear}
    else:  # int8-channel: encoder layers only, the classifier head stays fp32
        head = {name for name in linear if not name.startswith(("encoder.", "model.", "bert.", "roberta."))}
        spec = {name: per_channel_dynamic_qconfig for name in linear - head}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return quantize_dynamic(model, spec, dtype=torch.qint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="a tagger folder trained on English")
    parser.add_argument("--dev", type=Path, required=True, help="English dev, CoNLL columns")
    parser.add_argument("--sentences", type=int, default=1000, help="the first N dev sentences")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sentences = read_conll(args.dev)[: args.sentences]
    gold = [list(s.tags) for s in sentences]
    words = sum(len(s) for s in sentences)
    labels = model_labels(args.model)
    found: dict[str, np.ndarray] = {}
    for setting in ("fp32", "int8-tensor", "int8-channel"):
        model, tokenizer = load_tagger(args.model)
        max_length = checkpoint_max_length(args.model, model)
        model = quantized(model.float().eval(), setting)
        started = time.perf_counter()
        probs = predict_loaded(model, tokenizer, sentences, max_length=max_length, progress=False, bf16=False)
        seconds = time.perf_counter() - started
        f1 = entity_scores(gold, decode_tags(probs, labels)).overall.f1
        found[setting] = np.concatenate(probs)
        line = f"{setting:<13} {seconds:6.1f} s  {words / seconds:6.0f} words/s  F1 {100 * f1:.2f}"
        if setting != "fp32":
            diff = np.abs(found[setting] - found["fp32"]).max()
            agree = (found[setting].argmax(1) == found["fp32"].argmax(1)).mean()
            line += f"  max |Δp| {diff:.3f}  argmax as fp32 {100 * agree:.1f}%"
        print(line, flush=True)


if __name__ == "__main__":
    main()
