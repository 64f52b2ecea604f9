"""Run reports: results.json, results.md (laid out like the paper's Tables 2–3) and an F1 chart.

Our figures are fractions in [0, 1] in JSON and percentages in the Markdown table, beside the paper's.
A run given a bilingual dictionary is a different setting ("dictionary-assisted"): its report says so in
its title and first lines and leaves out the paper's zero-resource figures, so it is never read as one.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from unitrans.atomic import atomic_path, write_text_atomic

PAPER_SOURCE = "Wu et al., IJCAI 2020, Tables 2–4 (mBERT encoder)"
PAPER_F1: dict[str, dict[str, float]] = {
    # Entity F1 in percent. Only the figures we are sure of; anything else is shown as "—".
    "unitrans": {"es": 79.31, "nl": 82.90, "de": 74.82, "no": 81.17},
    "src": {"es": 76.34},
    "trans": {"es": 78.14},
}
PAPER_NOTES = ("The paper's model transfer (Θsrc) averages 76.95 F1 over es/nl/de/no.",)

MEASURES = ("f1", "precision", "recall")


def summarize(per_seed: Sequence[Mapping[str, float]]) -> dict[str, Any]:
    """Mean over seeds of F1/P/R, and the sample standard deviation of F1 (None for one seed: a single
    run says nothing about the spread, and 0.0 would claim it does)."""
    if not per_seed:
        raise ValueError("no runs to summarize")
    out: dict[str, Any] = {}
    for m in MEASURES:
        out[m] = float(np.mean([r[m] for r in per_seed]))
    f1s = [r["f1"] for r in per_seed]
    out["f1_std"] = float(np.std(f1s, ddof=1)) if len(f1s) > 1 else None
    out["per_seed"] = [dict(r) for r in per_seed]
    return out


def build_results(
    scores: Mapping[str, Mapping[str, Sequence[Mapping[str, float]]]],
) -> dict[str, dict[str, dict[str, Any]]]:
    """Per-seed scores {TARGET: {VARIANT: [runs]}} -> summaries {TARGET: {VARIANT: summarize(runs)}}."""
    return {t: {v: summarize(runs) for v, runs in by_variant.items()} for t, by_variant in scores.items()}


def _pct(x: float) -> str:
    return f"{100 * x:.2f}"


def _cell(r: Mapping[str, Any]) -> str:
    std = f" ± {_pct(r['f1_std'])}" if len(r.get("per_seed", ())) > 1 else ""
    return f"{_pct(r['f1'])}{std} (P {_pct(r['precision'])} / R {_pct(r['recall'])})"


def _paper_name(paper_rows: Mapping[str, str | None] | None, row: str) -> str | None:
    return paper_rows.get(row, row) if paper_rows else row


def _paper(variant: str | None, target: str) -> str:
    value = PAPER_F1.get(variant or "", {}).get(target)
    return "—" if value is None else f"{value:.2f}"


def render_markdown(
    results: Mapping[str, Mapping[str, Mapping[str, Any]]],
    *,
    encoder: str,
    titles: Mapping[str, str],
    coverage: Mapping[str, Sequence[float]] | None = None,
    timings: Sequence[Mapping[str, Any]] = (),
    seeds: int = 1,
    entity_shares: Mapping[str, Sequence[Mapping[str, float]]] | None = None,
    setting: Mapping[str, str] | None = None,
    agreement: Mapping[str, Sequence[Mapping[str, float]]] | None = None,
    paper_rows: Mapping[str, str | None] | None = None,
    diagnostics: Mapping[str, Mapping[str, Sequence[Mapping[str, Any]]]] | None = None,
) -> str:
    """The Markdown report: F1 table (ours beside the paper's), voting coverage, stage timings.

    `setting` (name, dictionary, sha256) marks a dictionary-assisted run: no paper column then.
    `paper_rows` says which paper row a row reproduces (default: the row of the same name; None: none,
    e.g. a later self-training round); `diagnostics` adds the per-round table (`diagnostics_lines`).
    """
    targets = list(results)
    variants = list(dict.fromkeys(v for t in targets for v in results[t]))
    paper = setting is None
    lines = [
        "# unitrans results" + ("" if paper else f" ({setting['name']}, not zero-resource)"),
        "",
        f"Entity micro F1 (conlleval), in %, on each target's test set; encoder: `{encoder}`; "
        f"{seeds} seed(s), mean ± sample std when more than one; precision/recall in parentheses.",
        f"Paper: {PAPER_SOURCE}; '—' = no paper figure we are sure of."
        if paper
        else f"Setting: **{setting['name']}**. The bilingual dictionary `{setting['dictionary']}` (SHA-256 "
        f"`{setting['sha256'][:16]}…`) seeded the word-translation map and gave the translations of the "
        "words it covers. These are not zero-resource results: compare them with neither the paper's "
        "figures nor zero-resource runs. No lexicon P@1 is reported for a dictionary-seeded map.",
        "",
    ]
    header = ["Variant"]
    for t in targets:
        header += [f"{t} (ours)", f"{t} (paper)"] if paper else [t]
    if len(targets) > 1:
        header.append("avg (ours)")
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join(["---"] * len(header)) + "|")
    for v in variants:
        row = [f"{titles.get(v, v)} [`{v}`]"]
        f1s = []
        for t in targets:
            r = results[t].get(v)
            row.append(_cell(r) if r else "—")
            if paper:
                row.append(_paper(_paper_name(paper_rows, v), t))
            if r:
                f1s.append(r["f1"])
        if len(targets) > 1:
            row.append(_pct(float(np.mean(f1s))) if len(f1s) == len(targets) else "—")
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", *(PAPER_NOTES if paper else ()), ""]
    if coverage:
        lines += [
            "## Voting coverage",
            "",
            "Share of unlabelled target words whose three teachers agree (hard label, Eqs. 10–11).",
            "",
            "| Target | Coverage per seed |",
            "|---|---|",
        ]
        for t, values in coverage.items():
            vals = ", ".join(f"{100 * c:.1f}%" for c in values)
            lines.append(f"| {t} | {vals} |")
        lines.append("")
    if entity_shares:
        lines += [
            "## Teachers on the unlabelled target text",
            "",
            "Share of D_T words each teacher tags as entities (no labels needed). A teacher far above the "
            "others usually learned from translated data that does not look like target text.",
            "",
            "| Target | Θsrc | Θteach | Θtrans |",
            "|---|---|---|---|",
        ]
        for t, per_seed in entity_shares.items():
            cells = [
                ", ".join(f"{100 * shares[k]:.1f}%" for shares in per_seed) for k in ("src", "teach", "trans")
            ]
            lines.append(f"| {t} | " + " | ".join(cells) + " |")
        lines.append("")
    if agreement:
        lines += [
            "## Neighbour agreement (denoise)",
            "",
            "Share of words whose label has the entity type of the majority of their k nearest words "
            "(no labels needed): on D_T the soft teacher's argmax, on D_trans the translated label; and "
            "the share of D_T words keeping a hard label after the neighbour filter. Per seed.",
            "",
            "| Target, student | D_T agreement | hard labels kept | D_trans agreement |",
            "|---|---|---|---|",
        ]
        for t, per_seed in agreement.items():
            cells = [
                ", ".join(f"{100 * d[k]:.1f}%" if k in d else "—" for d in per_seed)
                for k in ("dt_agreement", "dt_coverage_kept", "dtrans_agreement")
            ]
            lines.append(f"| {t} | " + " | ".join(cells) + " |")
        lines.append("")
    if diagnostics:
        lines += diagnostics_lines(diagnostics)
    if timings:
        lines += ["## Stage timings", "", "| Stage | Status | Seconds |", "|---|---|---|"]
        for rec in timings:
            status = "cached" if rec["cached"] else "ran"
            lines.append(f"| {rec['label']} | {status} | {rec['seconds']:.1f} |")
        total = sum(rec["seconds"] for rec in timings if not rec["cached"])
        lines += [f"| **total run this time** | | {total:.1f} |", ""]
    return "\n".join(lines)


TEACHER_NAMES = {"src": "Θsrc", "teach": "Θteach", "trans": "Θtrans", "student": "previous student"}
DIAGNOSTIC_KEYS = ("round", "voting_coverage", "entity_share")
"""The fixed fields of a round's diagnostics; any other float field (e.g. neighbour_agreement from
pseudo-label denoising) becomes a column of its own."""


def diagnostics_lines(diagnostics: Mapping[str, Mapping[str, Sequence[Mapping[str, Any]]]]) -> list[str]:
    """Per target, student variant, seed and self-training round: voting coverage and the share of D_T
    words each teacher tags as entities, and any further signal (neighbour agreement with denoising).
    Label-free; shown when some variant has several rounds (one round's figures are the sections above)."""
    entries = [r for by in diagnostics.values() for seeds in by.values() for s in seeds for r in s["rounds"]]
    extra = list(dict.fromkeys(k for r in entries for k in r if k not in DIAGNOSTIC_KEYS))
    if all(r["round"] == 1 for r in entries):
        return []
    header = ["Target", "Variant", "Seed", "Round", "Voting coverage", "Entity words per teacher"]
    header += [k.replace("_", " ") for k in extra]
    lines = [
        "## Self-training rounds (label-free diagnostics)",
        "",
        "Per round: share of D_T words on which every voter agrees (from round 2 the previous round's "
        "student votes too), and share of D_T words each teacher tags as entities.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] * len(header)) + "|",
    ]
    for target, by_variant in diagnostics.items():
        for variant, seeds in by_variant.items():
            for per_seed in seeds:
                for r in per_seed["rounds"]:
                    cov = r.get("voting_coverage")
                    shares = ", ".join(
                        f"{TEACHER_NAMES.get(k, k)} {100 * v:.1f}%" for k, v in r["entity_share"].items()
                    )
                    cells = [target, f"`{variant}`", str(per_seed["seed"]), str(r["round"])]
                    cells += ["—" if cov is None else f"{100 * cov:.1f}%", shares]
                    cells += ["—" if r.get(k) is None else f"{100 * r[k]:.1f}%" for k in extra]
                    lines.append("| " + " | ".join(cells) + " |")
    return [*lines, ""]


def plot_f1(
    path: Path,
    results: Mapping[str, Mapping[str, Mapping[str, Any]]],
    paper_rows: Mapping[str, str | None] | None = None,
) -> None:
    """Grouped bar chart of F1 (%) per variant and target language, error bars = std over seeds; black
    ticks mark the paper's figures where we have them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    targets = list(results)
    variants = list(dict.fromkeys(v for t in targets for v in results[t]))
    width = 0.8 / max(len(variants), 1)
    fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(targets) * max(len(variants), 2) * 0.5 + 2), 4))
    x = np.arange(len(targets))
    paper_labelled = False
    for i, v in enumerate(variants):
        f1 = [100 * results[t][v]["f1"] if v in results[t] else math.nan for t in targets]
        err = [100 * (results[t][v]["f1_std"] or 0.0) if v in results[t] else 0.0 for t in targets]
        pos = x + (i - (len(variants) - 1) / 2) * width
        ax.bar(pos, f1, width, yerr=err, label=v, capsize=2)
        paper = [PAPER_F1.get(_paper_name(paper_rows, v) or "", {}).get(t, math.nan) for t in targets]
        if not all(math.isnan(p) for p in paper):
            ax.scatter(pos, paper, marker="_", s=200, color="black", zorder=3,
                       label="paper (mBERT)" if not paper_labelled else None)  # fmt: skip
            paper_labelled = True
    ax.set_xticks(x, targets)
    ax.set_ylabel("entity F1 (%)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize="small", ncols=min(len(variants), 4))
    fig.tight_layout()
    try:
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=100, format="png")
    finally:
        plt.close(fig)


def write_report(
    out_dir: Path,
    results: Mapping[str, Mapping[str, Mapping[str, Any]]],
    **markdown_args: Any,
) -> dict[str, Path]:
    """Write results.json, results.md and f1.png into `out_dir`; returns their paths. Each appears whole
    or not at all, with the umask's mode (a shared run folder stays readable)."""
    paths = {"json": out_dir / "results.json", "md": out_dir / "results.md", "png": out_dir / "f1.png"}
    write_text_atomic(paths["json"], json.dumps(results, indent=2) + "\n")
    write_text_atomic(paths["md"], render_markdown(results, **markdown_args) + "\n")
    plot_f1(paths["png"], results, markdown_args.get("paper_rows"))
    return paths
