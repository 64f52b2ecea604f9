"""End to end on the tiny encoder and hand-written fixtures: every variant, the cache, resuming after a
kill, ensembling, several targets, and target labels that never matter."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from unitrans.cli import main
from unitrans.model.predict import load_probs
from unitrans.pipeline import distillation, stages
from unitrans.pipeline.cache import StageCache
from unitrans.pipeline.config import make_config
from unitrans.pipeline.graph import planned_stages
from unitrans.pipeline.language import LanguageStages
from unitrans.pipeline.runner import RunResult, run_pipeline
from unitrans.pipeline.variants import VARIANTS

FIXTURES = Path(__file__).parent / "fixtures" / "pipeline"
TINY = {"epochs": 6, "teach_epochs": 4, "student_epochs": 10, "batch_size": 2, "max_length": 32,
        "freeze_layers": 1, "ensemble": 2, "teacher_lr": 2e-2, "student_lr": 2e-2, "workers": 1}  # fmt: skip
"""Tiny models need a high learning rate and a few dozen steps to predict anything but O. One process:
starting workers costs more than these models take to train (one test below runs two)."""


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _config(encoder: Path, out: Path, **changes):
    values = {"targets": ("es",), "data_dir": FIXTURES, "encoder": str(encoder), "out_dir": out, **TINY}
    values.update(changes)
    return make_config("paper", **values)


@pytest.fixture(scope="module")
def full_run(tiny_encoder_dir, tmp_path_factory) -> tuple[RunResult, object]:
    config = _config(tiny_encoder_dir, tmp_path_factory.mktemp("full"))
    return run_pipeline(config, progress=False), config


def _predictions(result: RunResult, lang: str, variant: str) -> list[list[str]]:
    return [read_predictions_file(Path(r["predictions"])) for r in result.runs[lang][variant]]


def read_predictions_file(path: Path) -> list[str]:
    lines = [line.split() for line in path.read_text().splitlines()]
    return [cols[-1] for cols in lines if cols]


def test_every_variant_is_reported(full_run):
    result, config = full_run
    data = json.loads((config.out_dir / "results.json").read_text())
    assert set(data["es"]) == set(VARIANTS)
    for scores in data["es"].values():
        assert set(scores) == {"f1", "f1_std", "precision", "recall", "per_seed"}
        assert all(0.0 <= scores[k] <= 1.0 for k in ("f1", "precision", "recall"))
    md = (config.out_dir / "results.md").read_text()
    assert "79.31" in md and str(config.encoder) in md and "Voting coverage" in md
    assert "Teachers on the unlabelled target text" in md
    assert (config.out_dir / "f1.png").stat().st_size > 0
    assert json.loads((config.out_dir / "config.json").read_text())["eta"] == 1.0
    assert 0.0 <= result.coverage["es"][0] <= 1.0
    # the tiny models learn something, so the identity checks below compare non-trivial predictions
    assert result.results["es"]["src"]["f1"] > 0 and result.results["es"]["unitrans"]["f1"] > 0
    # every test word got exactly one predicted tag
    n_words = sum(1 for line in (FIXTURES / "es" / "test.txt").read_text().splitlines() if line.strip())
    for variant in VARIANTS:
        assert len(_predictions(result, "es", variant)[0]) == n_words


def test_ensemble_averages_m_teacher_runs(full_run):
    result, _ = full_run
    labels = [r.label for r in result.records]
    for kind in ("src", "teach", "trans"):
        member = f"{'' if kind == 'src' else 'es: '}train {kind} (seed 1042)"  # the second ensemble member
        assert member in labels
        assert f"es: {kind} ensemble of 2 (seed 42) on D_T" in labels
    assert "es (ensemble)" in result.coverage
    by_key = {r.key: r for r in result.records}
    averaged = [r for r in result.records if r.stage == "ensemble"]
    assert len(averaged) == 3
    for rec in averaged:
        manifest = json.loads((rec.folder / "manifest.json").read_text())
        members = [load_probs(by_key[k].folder / "probs.npz")[0] for k in manifest["inputs"].values()]
        assert len(members) == 2
        got = load_probs(rec.folder / "probs.npz")[0]
        for i, p in enumerate(got):
            np.testing.assert_allclose(p, (members[0][i] + members[1][i]) / 2, rtol=1e-6)


def test_second_run_skips_every_stage(full_run):
    result, config = full_run
    again = run_pipeline(config, progress=False)
    assert again.records and all(r.cached for r in again.records)
    assert again.results == result.results


def test_the_plan_holds_every_stage_of_the_run_cached_or_not(full_run, tmp_path):
    """The run's first line and its stages left count a plan made before anything runs: it must hold
    exactly the stages the run reports, with their keys even when nothing is cached (the keys of stages
    not built yet give the keys after them), each listed after what it needs."""
    result, config = full_run
    keys = sorted(r.key for r in result.records)
    for cache_dir, cached in ((config.cache_root, True), (tmp_path / "empty", False)):
        cfg = _config(Path(config.encoder), tmp_path / "out", cache_dir=cache_dir)
        ctx = stages.StageContext(StageCache(cache_dir), cfg, progress=False)
        source, shared = stages.read_source(cfg), {}
        plan = planned_stages(ctx, {lang: LanguageStages(ctx, source, lang, shared) for lang in cfg.targets})
        assert sorted(s.key for s in plan) == keys
        assert all(s.cached == cached for s in plan) and not ctx.records
        seen: set[str] = set()
        for s in plan:
            assert all(n in seen for n in s.needs if n in keys), f"{s.label} listed before what it needs"
            seen.add(s.key)
    assert not (tmp_path / "empty").exists()  # planning built nothing


def test_changing_eta_reruns_only_students_and_their_evaluation(full_run, tmp_path):
    _, config = full_run
    changed = _config(Path(config.encoder), tmp_path, eta=0.5, cache_dir=config.cache_root)
    result = run_pipeline(changed, progress=False)
    ran = {r.stage for r in result.records if not r.cached}
    assert ran == {"student", "probs", "evaluate"}
    ran_students = sorted(r.label for r in result.records if not r.cached and r.stage == "student")
    # students without hard labels (no-hard, teacher-src, teacher-trans) do not depend on η
    assert ran_students == sorted(f"es: student {v} (seed 42)" for v in ("unitrans", "no-soft", "ensemble"))
    assert all("on test" in r.label for r in result.records if not r.cached and r.stage == "probs")


def test_killed_run_resumes_with_identical_results(full_run, tmp_path):
    result, config = full_run
    # The state a run killed while training Θteach leaves: every stage finished before it, none after.
    cache = tmp_path / "cache"
    shutil.copytree(config.cache_root, cache)
    computed = [r for r in result.records if not r.cached]
    cut = next(i for i, r in enumerate(computed) if r.label == "es: train teach (seed 42)")
    for rec in computed[cut:]:
        shutil.rmtree(cache / rec.folder.relative_to(config.cache_root))
    finished_before = {r.label for r in computed[:cut]}
    small = _config(Path(config.encoder), tmp_path / "out", variants=("src", "unitrans"), cache_dir=cache)
    # ... and this run is killed again, inside the stage after the next one
    calls: list[str] = []

    def kill(record):
        if not record.cached:
            calls.append(record.label)
            if len(calls) == 2:
                raise KeyboardInterrupt("simulated kill")

    with pytest.raises(KeyboardInterrupt):
        run_pipeline(small, progress=False, after_stage=kill)
    resumed = run_pipeline(small, progress=False)
    ran = [r.label for r in resumed.records if not r.cached]
    assert ran and not set(ran) & (finished_before | set(calls))
    assert "es: train teach (seed 42)" in calls and "es: student unitrans (seed 42)" in ran
    for variant in ("src", "unitrans"):
        assert resumed.results["es"][variant] == result.results["es"][variant]
        assert _predictions(resumed, "es", variant) == _predictions(result, "es", variant)


def test_target_labels_are_never_used(full_run, tmp_path):
    result, config = full_run
    data = tmp_path / "data"
    shutil.copytree(FIXTURES, data)
    train = data / "es" / "train.txt"
    lines = train.read_text().splitlines()
    # a wrong but well-formed tag on every word
    train.write_text("\n".join(f"{line.split()[0]} B-MISC" if line.strip() else "" for line in lines) + "\n")
    corrupted = _config(Path(config.encoder), tmp_path / "out", data_dir=data, variants=("unitrans",))
    got = run_pipeline(corrupted, progress=False)
    assert not any(r.cached for r in got.records)  # a fresh cache: everything recomputed
    assert _predictions(got, "es", "unitrans") == _predictions(result, "es", "unitrans")
    # no tag column at all: every stage key is the same as with the original file
    train.write_text("\n".join(line.split()[0] if line.strip() else "" for line in lines) + "\n")
    words_only = _config(Path(config.encoder), tmp_path / "out2", data_dir=data, cache_dir=config.cache_root)
    assert all(r.cached for r in run_pipeline(words_only, progress=False).records)


def test_two_targets_share_the_source_model(full_run, tmp_path):
    _, config = full_run
    data = tmp_path / "data"
    shutil.copytree(FIXTURES, data)
    shutil.copytree(data / "es", data / "xx")
    blocks = (data / "xx" / "train.txt").read_text().split("\n\n")
    (data / "xx" / "train.txt").write_text("\n\n".join(blocks[2:]))
    two = _config(Path(config.encoder), tmp_path / "out", data_dir=data, targets=("es", "xx"),
                  variants=("src", "teach"), cache_dir=config.cache_root)  # fmt: skip
    result = run_pipeline(two, progress=False)
    assert set(result.results) == {"es", "xx"}
    src_trainings = [r for r in result.records if r.label == "train src (seed 42)"]
    assert len(src_trainings) == 1 and src_trainings[0].cached
    ran = sorted(r.label for r in result.records if not r.cached)
    assert "translate en→xx" in ran and "xx: train teach (seed 42)" in ran
    assert not any(label.startswith("es:") for label in ran)
    # word-type embeddings: en, es and xx once each; the source side is shared by both targets
    assert len(list((config.cache_root / "embeddings" / "type-embeddings").glob("*.npz"))) == 3


def test_seeds_report_mean_and_std(full_run, tmp_path):
    _, full = full_run
    config = _config(Path(full.encoder), tmp_path, variants=("src",), seeds=2, cache_dir=full.cache_root)
    result = run_pipeline(config, progress=False)
    assert next(r.label for r in result.records if not r.cached) == "train src (seed 43)"
    runs = result.results["es"]["src"]["per_seed"]
    assert [r["seed"] for r in runs] == [42, 43]
    assert result.results["es"]["src"]["f1"] == pytest.approx((runs[0]["f1"] + runs[1]["f1"]) / 2)


def test_two_workers_give_the_same_results_as_one(full_run, tmp_path):
    result, config = full_run
    variants = ("src", "trans", "teach", "unitrans", "ensemble")
    side = _config(Path(config.encoder), tmp_path / "two", variants=variants, workers=2)
    got = run_pipeline(side, progress=False)
    assert not any(r.cached for r in got.records)
    for variant in variants:
        assert got.results["es"][variant] == result.results["es"][variant]
        assert _predictions(got, "es", variant) == _predictions(result, "es", variant)
    # every stage ran once, and a second run (parallel too) skips them all
    labels = [r.label for r in got.records]
    assert len(labels) == len(set(labels))
    assert labels.count("es: train teach (seed 1042)") == 1
    assert all(r.cached for r in run_pipeline(side, progress=False).records)


def test_missing_file_is_a_clear_error(tiny_encoder_dir, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(FIXTURES, data)
    (data / "es" / "test.txt").unlink()
    code = main(["run", "--target", "es", "--data-dir", str(data), "--encoder", str(tiny_encoder_dir),
                 "--out", str(tmp_path / "out")])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert f"{data / 'es' / 'test.txt'}: file not found" in err and "Traceback" not in err


def test_cli_run_prints_the_table_and_says_what_was_skipped(full_run, tmp_path, capsys):
    _, config = full_run
    sets = [f"--set={name}={value}" for name, value in TINY.items()]
    argv = ["run", "--target", "es", "--data-dir", str(FIXTURES), "--encoder", str(config.encoder),
            "--variants", "src", "unitrans", "--out", str(tmp_path), "--cache-dir", str(config.cache_root),
            "--no-progress", *sets]  # fmt: skip
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "| Model transfer (Θsrc) [`src`] |" in captured.out and "[`unitrans`]" in captured.out
    assert "[cached, skipped] train src (seed 42)" in captured.err and "ran in" not in captured.err
    assert json.loads((tmp_path / "results.json").read_text())["es"].keys() == {"src", "unitrans"}


def test_entity_share_counts_non_o_argmax_and_warns_on_disagreement(tmp_path, caplog):
    import logging

    import numpy as np

    from unitrans.data import CONLL_LABELS
    from unitrans.model.predict import save_probs
    from unitrans.pipeline import runner
    from unitrans.pipeline.cache import StageRecord

    o, per = CONLL_LABELS.index("O"), CONLL_LABELS.index("B-PER")
    probs = [np.eye(len(CONLL_LABELS), dtype=np.float32)[[o, per, o, o]]]
    save_probs(tmp_path / "probs.npz", probs, list(CONLL_LABELS))
    record = StageRecord("probs", "de: src on D_T", "k", tmp_path, cached=False, seconds=0.0)
    assert distillation.entity_share(record) == 0.25
    with caplog.at_level(logging.WARNING, logger="unitrans.pipeline.runner"):
        runner._warn_if_teachers_disagree("de", {"src": 0.10, "teach": 0.11, "trans": 0.12})
        assert not caplog.records
        runner._warn_if_teachers_disagree("de", {"src": 0.098, "teach": 0.164, "trans": 0.173})
    assert "--set casing" in caplog.text and "Θtrans tags 17.3%" in caplog.text
