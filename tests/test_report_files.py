"""results.json / results.md / chart from per-seed scores."""

from __future__ import annotations

import json

import pytest

from unitrans.eval.report import PAPER_F1, build_results, render_markdown, summarize, write_report


def _run(f1, p, r):
    return {"f1": f1, "precision": p, "recall": r}


def test_summarize_mean_and_sample_std():
    s = summarize([_run(0.5, 0.4, 0.6), _run(0.7, 0.6, 0.8)])
    assert s["f1"] == pytest.approx(0.6)
    assert s["precision"] == pytest.approx(0.5) and s["recall"] == pytest.approx(0.7)
    assert s["f1_std"] == pytest.approx(0.1414213562)
    assert summarize([_run(0.5, 0.4, 0.6)])["f1_std"] is None  # one seed: no spread to report
    assert len(s["per_seed"]) == 2


def test_report_files(tmp_path):
    results = build_results(
        {
            "es": {"src": [_run(0.5, 0.4, 0.6), _run(0.7, 0.6, 0.8)], "unitrans": [_run(0.8, 0.8, 0.8)] * 2},
            "xx": {"src": [_run(0.1, 0.1, 0.1)] * 2},
        }
    )
    paths = write_report(
        tmp_path,
        results,
        encoder="tiny",
        titles={"src": "Model transfer"},
        coverage={"es": [0.9, 0.8]},
        timings=[{"label": "train src", "cached": False, "seconds": 1.5}],
        seeds=2,
    )
    data = json.loads(paths["json"].read_text())
    assert set(data) == {"es", "xx"} and data["es"]["src"]["f1"] == pytest.approx(0.6)
    assert set(data["es"]["src"]) == {"f1", "f1_std", "precision", "recall", "per_seed"}
    md = paths["md"].read_text()
    assert "60.00 ± 14.14 (P 50.00 / R 70.00)" in md
    assert f"{PAPER_F1['unitrans']['es']:.2f}" in md and "`tiny`" in md
    assert "90.0%, 80.0%" in md and "train src" in md
    assert "| Model transfer [`src`] |" in md
    # unitrans has no xx result: its average cell is a dash, the paper has no xx figure either
    unitrans_row = next(line for line in md.splitlines() if "[`unitrans`]" in line)
    assert unitrans_row.rstrip(" |").endswith("—")
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_render_single_target_has_no_average_column():
    results = build_results({"es": {"src": [_run(0.5, 0.5, 0.5)]}})
    md = render_markdown(results, encoder="e", titles={})
    assert "avg" not in md.split("## ")[0].splitlines()[5]
    assert "50.00 (P 50.00 / R 50.00)" in md
