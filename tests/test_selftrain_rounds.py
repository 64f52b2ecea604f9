"""Self-training rounds (`--rounds N`) and their label-free diagnostics: the round rule against direct
transcriptions, cache keys that change only what they must, resuming round by round, and the report.
Tiny encoder, hand-written fixtures."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from unitrans.cli import main
from unitrans.data import CONLL_LABELS
from unitrans.errors import UnitransError
from unitrans.eval.report import diagnostics_lines
from unitrans.model.predict import load_probs, save_probs
from unitrans.pipeline import distillation, stages
from unitrans.pipeline.cache import StageCache, StageRecord
from unitrans.pipeline.config import PipelineConfig, make_config
from unitrans.pipeline.runner import RunResult, run_pipeline
from unitrans.pipeline.stages import StageContext
from unitrans.pipeline.variants import paper_variant, report_rows, row_title
from unitrans.train.distill import NO_HARD_LABEL, agreement_votes, vote_hard_labels
from unitrans.train.selftrain import round_teachers

FIXTURES = Path(__file__).parent / "fixtures" / "pipeline"
TINY = {"epochs": 6, "teach_epochs": 4, "student_epochs": 10, "batch_size": 2, "max_length": 32,
        "freeze_layers": 1, "ensemble": 1, "teacher_lr": 2e-2, "student_lr": 2e-2, "workers": 1}  # fmt: skip
OUT = CONLL_LABELS.index("O")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _config(encoder: Path, out: Path, **changes) -> PipelineConfig:
    values = {"targets": ("es",), "data_dir": FIXTURES, "encoder": str(encoder), "out_dir": out,
              "variants": ("src", "unitrans"), **TINY, **changes}  # fmt: skip
    return make_config("paper", **values)


@pytest.fixture(scope="module")
def one_round(tiny_encoder_dir, tmp_path_factory) -> RunResult:
    out = tmp_path_factory.mktemp("rounds")
    return run_pipeline(_config(tiny_encoder_dir, out / "r1", cache_dir=out / "cache"), progress=False)


@pytest.fixture(scope="module")
def two_rounds(one_round, tiny_encoder_dir) -> RunResult:
    """Run after `one_round`, on its cache."""
    base = one_round.paths["json"].parent.parent
    return run_pipeline(
        _config(tiny_encoder_dir, base / "r2", cache_dir=base / "cache", rounds=2), progress=False
    )


def _by_label(result: RunResult) -> dict[str, StageRecord]:
    return {r.label: r for r in result.records}


def _probs(rec: StageRecord) -> list[np.ndarray]:
    return load_probs(rec.folder / "probs.npz")[0]


def _votes(rec: StageRecord) -> list[np.ndarray]:
    return distillation.read_votes(rec)


def _manifest(rec: StageRecord) -> dict:
    return json.loads((rec.folder / "manifest.json").read_text())


# --- the rule, on hand-made arrays ----------------------------------------------------------------


def _onehot(ids: list[int], n: int = 3) -> np.ndarray:
    m = np.full((len(ids), n), 0.1, dtype=np.float32)
    m[np.arange(len(ids)), ids] = 0.8
    return m


def test_agreement_votes_of_four_voters_is_the_all_agree_rule():
    src = [_onehot([0, 1, 2, 2, 1])]
    teach = [_onehot([0, 1, 2, 1, 1])]
    trans = [_onehot([0, 1, 2, 1, 1])]
    stu = [_onehot([0, 2, 2, 1, 1])]
    got = agreement_votes([src, teach, trans, stu])[0]
    assert got.tolist() == [0, NO_HARD_LABEL, 2, NO_HARD_LABEL, 1]
    # three voters: exactly UniTrans's Eqs. 10–11
    assert agreement_votes([src, teach, trans])[0].tolist() == vote_hard_labels(src, teach, trans)[0].tolist()
    with pytest.raises(ValueError):
        agreement_votes([src, [_onehot([0])]])


def test_round_teachers_round_one_is_unitrans_and_later_rounds_add_the_student():
    t = {k: object() for k in ("src", "teach", "trans", "stu")}
    voters = [(k, t[k]) for k in ("src", "teach", "trans")]
    first = round_teachers(("teach", t["teach"]), voters, None)
    assert first.soft == {"teach": t["teach"]} and first.voters == dict(voters)
    later = round_teachers(("teach", t["teach"]), voters, t["stu"])
    assert later.soft == {"teach": t["teach"], "student": t["stu"]}
    assert later.voters == {**dict(voters), "student": t["stu"]}
    # a variant without a hard loss gets no vote in any round, one without a soft loss no soft mean
    assert round_teachers(("src", t["src"]), [], t["stu"]).voters == {}
    assert round_teachers(None, voters, t["stu"]).soft == {}


def test_report_rows_titles_and_paper_rows():
    assert report_rows(("src", "unitrans"), 1) == [("src", "src", 1), ("unitrans", "unitrans", 1)]
    assert report_rows(("src", "unitrans"), 3) == [
        ("src", "src", 1), ("unitrans-r1", "unitrans", 1), ("unitrans-r2", "unitrans", 2),
        ("unitrans", "unitrans", 3),
    ]  # fmt: skip
    assert row_title("unitrans", "unitrans", 1, 1) == "UniTrans"
    assert row_title("unitrans-r1", "unitrans", 1, 3) == "UniTrans, round 1"
    assert row_title("unitrans", "unitrans", 3, 3) == "UniTrans (3 rounds)"
    assert row_title("src", "src", 1, 3) == "Model transfer (Θsrc)"
    assert paper_variant("unitrans", 1) == "unitrans" and paper_variant("unitrans", 2) is None


def test_rounds_must_be_positive(tiny_encoder_dir, tmp_path):
    with pytest.raises(UnitransError, match="rounds ≥ 1"):
        _config(tiny_encoder_dir, tmp_path, rounds=0)
    assert _config(tiny_encoder_dir, tmp_path).rounds == 1


def test_votes_stage_and_entity_share_on_a_hand_made_example(tmp_path):
    """Coverage and entity shares of four voters, counted by hand."""
    per, org = CONLL_LABELS.index("B-PER"), CONLL_LABELS.index("B-ORG")
    eye = np.eye(len(CONLL_LABELS), dtype=np.float32)
    tags = {  # two sentences, 3 + 2 words
        "src": ([OUT, per, OUT], [org, OUT]),
        "teach": ([OUT, per, per], [org, OUT]),
        "trans": ([OUT, per, OUT], [org, OUT]),
        "student": ([OUT, per, OUT], [OUT, OUT]),
    }
    ctx = StageContext(StageCache(tmp_path / "cache"), None, progress=False)  # type: ignore[arg-type]
    records = {}
    for name, sents in tags.items():
        folder = tmp_path / name
        folder.mkdir()
        save_probs(folder / "probs.npz", [eye[list(s)] for s in sents], list(CONLL_LABELS))
        records[name] = StageRecord("probs", name, f"key-{name}", folder, cached=True, seconds=0.0)
    rec = distillation.votes(ctx, records, label="votes")
    # all four agree on words 1, 2 of sentence 1 and word 2 of sentence 2: 3 of 5 words
    assert rec.metrics["coverage"] == pytest.approx(3 / 5)
    assert [v.tolist() for v in _votes(rec)] == [[OUT, per, NO_HARD_LABEL], [NO_HARD_LABEL, OUT]]
    shares = {k: distillation.entity_share(r) for k, r in records.items()}
    assert shares == pytest.approx({"src": 2 / 5, "teach": 3 / 5, "trans": 2 / 5, "student": 1 / 5})


def test_diagnostics_table_has_a_column_for_further_signals():
    entry = {"round": 1, "voting_coverage": 0.8, "entity_share": {"src": 0.1, "teach": 0.125}}
    one = {"es": {"unitrans": [{"seed": 42, "rounds": [entry]}]}}
    assert diagnostics_lines(one) == []  # one round: the coverage and teacher sections say it all
    two = {"es": {"unitrans": [{"seed": 42, "rounds": [entry, {**entry, "round": 2}]}]}}
    text = "\n".join(diagnostics_lines(two))
    assert "| es | `unitrans` | 42 | 2 | 80.0% | Θsrc 10.0%, Θteach 12.5% |" in text
    hooked = {
        "es": {
            "unitrans": [{"seed": 42, "rounds": [entry, {**entry, "round": 2, "neighbour_agreement": 0.9}]}]
        }
    }
    text = "\n".join(diagnostics_lines(hooked))
    assert "neighbour agreement" in text and "| 2 | 80.0% | Θsrc 10.0%, Θteach 12.5% | 90.0% |" in text
    assert "| 1 | 80.0% | Θsrc 10.0%, Θteach 12.5% | — |" in text


# --- the pipeline -----------------------------------------------------------------------------------


def test_round_one_keys_are_unitrans_keys(one_round):
    """The votes and student of round 1 are keyed exactly as UniTrans keyed them before rounds existed."""
    rec = _by_label(one_round)
    cache = StageCache(one_round.paths["json"].parent.parent / "cache")
    votes_key = cache.key(
        "votes", {}, {k: rec[f"es: {k} (seed 42) on D_T"].key for k in ("src", "teach", "trans")}
    )
    assert rec["es: votes (seed 42)"].key == votes_key
    student = rec["es: student unitrans (seed 42)"]
    settings = _manifest(student)["settings"]
    assert set(settings) == {"eta", "soft_weight", "train"}
    text_key = stages.read_target_text(make_config("paper", targets=("es",), data_dir=FIXTURES), "es")[0].key
    inputs = {"data": text_key, "soft": rec["es: teach (seed 42) on D_T"].key, "hard": votes_key}
    assert student.key == cache.key("student", settings, inputs)
    assert set(one_round.runs["es"]) == {"src", "unitrans"}
    assert (
        one_round.diagnostics["es"]["unitrans"][0]["rounds"][0]["voting_coverage"]
        == one_round.coverage["es"][0]
    )
    assert "Self-training rounds" not in one_round.markdown


def test_two_rounds_after_one_reuse_round_one(one_round, two_rounds):
    ran = sorted(r.label for r in two_rounds.records if not r.cached)
    assert ran == sorted([
        "es: student unitrans (seed 42) on D_T",
        "es: soft targets of unitrans round 2 (seed 42)",
        "es: votes of unitrans round 2 (seed 42)",
        "es: student unitrans round 2 (seed 42)",
        "es: unitrans (seed 42) on test",
        "es: evaluate unitrans (seed 42)",
    ])  # fmt: skip
    assert two_rounds.results["es"]["unitrans-r1"] == one_round.results["es"]["unitrans"]
    assert two_rounds.results["es"]["src"] == one_round.results["es"]["src"]
    assert list(two_rounds.results["es"]) == ["src", "unitrans-r1", "unitrans"]


def test_round_two_combines_targets_by_the_rule(two_rounds):
    """Soft targets = (p_teach + p_student1) / 2; hard label = the label all four voters' argmaxes give."""
    rec = _by_label(two_rounds)
    p = {k: _probs(rec[f"es: {k} (seed 42) on D_T"]) for k in ("src", "teach", "trans")}
    p["student"] = _probs(rec["es: student unitrans (seed 42) on D_T"])
    soft = _probs(rec["es: soft targets of unitrans round 2 (seed 42)"])
    votes = _votes(rec["es: votes of unitrans round 2 (seed 42)"])
    assert len(soft) == len(votes) == len(p["teach"]) > 0
    changed = 0
    for i in range(len(soft)):
        np.testing.assert_allclose(soft[i], (p["teach"][i] + p["student"][i]) / 2, rtol=1e-6)
        for w in range(len(votes[i])):
            labels = {int(p[k][i][w].argmax()) for k in p}
            assert votes[i][w] == (labels.pop() if len(labels) == 1 else NO_HARD_LABEL)
        changed += int(np.abs(soft[i] - p["teach"][i]).max() > 1e-3)
    assert changed > 0  # the student's probabilities are not the teacher's: the mean matters
    student2 = rec["es: student unitrans round 2 (seed 42)"]
    inputs = _manifest(student2)["inputs"]
    assert inputs["soft"] == rec["es: soft targets of unitrans round 2 (seed 42)"].key
    assert inputs["hard"] == rec["es: votes of unitrans round 2 (seed 42)"].key


def test_round_two_key_depends_on_round_one_student_only_through_its_probabilities(two_rounds):
    rec = _by_label(two_rounds)
    student1, on_text = rec["es: student unitrans (seed 42)"], rec["es: student unitrans (seed 42) on D_T"]
    assert _manifest(on_text)["inputs"]["model"] == student1.key
    vote_inputs = _manifest(rec["es: votes of unitrans round 2 (seed 42)"])["inputs"]
    assert vote_inputs == {**{k: rec[f"es: {k} (seed 42) on D_T"].key for k in ("src", "teach", "trans")},
                           "student": on_text.key}  # fmt: skip
    soft_inputs = _manifest(rec["es: soft targets of unitrans round 2 (seed 42)"])["inputs"]
    assert soft_inputs == {"run0": rec["es: teach (seed 42) on D_T"].key, "run1": on_text.key}
    # the round-2 student's own settings are round 1's: what differs is its teachers
    assert (
        _manifest(rec["es: student unitrans round 2 (seed 42)"])["settings"]
        == _manifest(student1)["settings"]
    )


def test_diagnostics_per_round_are_the_counts_of_the_cached_probabilities(two_rounds):
    rec = _by_label(two_rounds)
    p = {k: _probs(rec[f"es: {k} (seed 42) on D_T"]) for k in ("src", "teach", "trans")}
    p["student"] = _probs(rec["es: student unitrans (seed 42) on D_T"])
    words = sum(len(s) for s in p["src"])

    def share(name: str) -> float:
        return sum(int((s.argmax(-1) != OUT).sum()) for s in p[name]) / words

    def coverage(names: tuple[str, ...]) -> float:
        agree = 0
        for i in range(len(p["src"])):
            first = p[names[0]][i].argmax(-1)
            agree += int(np.all([p[k][i].argmax(-1) == first for k in names], axis=0).sum())
        return agree / words

    [per_seed] = two_rounds.diagnostics["es"]["unitrans"]
    r1, r2 = per_seed["rounds"]
    assert per_seed["seed"] == 42 and (r1["round"], r2["round"]) == (1, 2)
    assert r1["voting_coverage"] == pytest.approx(coverage(("src", "teach", "trans")))
    assert r2["voting_coverage"] == pytest.approx(coverage(("src", "teach", "trans", "student")))
    assert r1["entity_share"] == pytest.approx({k: share(k) for k in ("src", "teach", "trans")})
    assert r2["entity_share"] == pytest.approx({k: share(k) for k in ("src", "teach", "trans", "student")})
    on_disk = json.loads(two_rounds.paths["diagnostics"].read_text())
    assert on_disk == json.loads(json.dumps(two_rounds.diagnostics))
    md = two_rounds.paths["md"].read_text()
    assert "## Self-training rounds (label-free diagnostics)" in md
    assert f"| es | `unitrans` | 42 | 2 | {100 * r2['voting_coverage']:.1f}% |" in md
    # the paper's figure sits beside round 1, the published method, not beside round 2
    assert "| UniTrans, round 1 [`unitrans-r1`] |" in md and "| 79.31 |" in md
    final = next(line for line in md.splitlines() if "[`unitrans`]" in line)
    assert final.startswith("| UniTrans (2 rounds) [`unitrans`] |") and "79.31" not in final


def test_the_final_round_is_exported(two_rounds):
    folder = two_rounds.exports["es"]["unitrans"]
    assert two_rounds.runs["es"]["unitrans"][0]["model"].startswith(
        str(_by_label(two_rounds)["es: student unitrans round 2 (seed 42)"].folder)
    )
    card = (folder / "README.md").read_text()
    assert "# UniTrans (2 rounds): named entities" in card
    assert "| UniTrans, round 1 |" in card and "| UniTrans (2 rounds) (this model) |" in card


def test_three_rounds_reuse_two_and_workers_give_the_same_numbers(two_rounds, tiny_encoder_dir, tmp_path):
    """--rounds 3 after --rounds 2 runs round 3 only, in process or in two workers (the graph's needs)."""
    cache = two_rounds.paths["json"].parent.parent / "cache"
    got = {}
    for workers in (1, 2):
        copy = tmp_path / f"cache{workers}"
        shutil.copytree(cache, copy)
        config = _config(
            tiny_encoder_dir, tmp_path / f"w{workers}", cache_dir=copy, rounds=3, workers=workers
        )
        got[workers] = run_pipeline(config, progress=False)
        ran = {r.label for r in got[workers].records if not r.cached}
        assert ran == {
            "es: student unitrans round 2 (seed 42) on D_T",
            "es: soft targets of unitrans round 3 (seed 42)",
            "es: votes of unitrans round 3 (seed 42)",
            "es: student unitrans round 3 (seed 42)",
            "es: unitrans (seed 42) on test",
            "es: evaluate unitrans (seed 42)",
        }
        assert got[workers].results["es"]["unitrans-r2"] == two_rounds.results["es"]["unitrans"]
        assert got[workers].results["es"]["unitrans-r1"] == two_rounds.results["es"]["unitrans-r1"]
    assert got[1].results == got[2].results
    assert [len(s["rounds"]) for s in got[2].diagnostics["es"]["unitrans"]] == [3]


def test_cli_rounds_option(two_rounds, tiny_encoder_dir, tmp_path, capsys):
    cache = two_rounds.paths["json"].parent.parent / "cache"
    sets = [f"--set={name}={value}" for name, value in TINY.items()]
    argv = ["run", "--target", "es", "--data-dir", str(FIXTURES), "--encoder", str(tiny_encoder_dir),
            "--variants", "src", "unitrans", "--rounds", "2", "--out", str(tmp_path),
            "--cache-dir", str(cache), "--no-progress", *sets]  # fmt: skip
    assert main(argv) == 0
    assert "ran in" not in capsys.readouterr().err  # every stage of both rounds is cached
    assert json.loads((tmp_path / "config.json").read_text())["rounds"] == 2
    assert list(json.loads((tmp_path / "results.json").read_text())["es"]) == [
        "src",
        "unitrans-r1",
        "unitrans",
    ]


def test_denoising_applies_to_each_round_s_own_targets(two_rounds, tiny_encoder_dir, tmp_path):
    """With denoise=neighbours, round 2's denoise stage takes round 2's soft mean and four-voter votes, and
    its neighbour agreement is a column of the round's diagnostics."""
    cache = two_rounds.paths["json"].parent.parent / "cache"
    config = _config(tiny_encoder_dir, tmp_path, cache_dir=cache, rounds=2, denoise="neighbours", denoise_k=3)
    result = run_pipeline(config, progress=False)
    rec = _by_label(result)
    denoise2 = rec["es: denoise targets of unitrans round 2 (seed 42)"]
    inputs = _manifest(denoise2)["inputs"]
    assert inputs["soft"] == rec["es: soft targets of unitrans round 2 (seed 42)"].key
    assert inputs["hard"] == rec["es: votes of unitrans round 2 (seed 42)"].key
    student_inputs = _manifest(rec["es: student unitrans round 2 (seed 42)"])["inputs"]
    assert student_inputs["soft"] == student_inputs["hard"] == denoise2.key
    [per_seed] = result.diagnostics["es"]["unitrans"]
    assert [r["neighbour_agreement"] for r in per_seed["rounds"]] == [
        rec["es: denoise teach targets (seed 42)"].metrics["agreement"],
        denoise2.metrics["agreement"],
    ]
    assert "neighbour agreement" in result.markdown
    assert (
        result.runs["es"]["unitrans-r1"][0]["denoise"]["dt_agreement"]
        == per_seed["rounds"][0]["neighbour_agreement"]
    )


def test_the_eta_plan_holds_every_round(two_rounds, tiny_encoder_dir, tmp_path):
    """The plan behind the run's ETA lists every stage of both rounds with its key, even uncached."""
    from unitrans.pipeline.graph import planned_stages
    from unitrans.pipeline.language import LanguageStages

    keys = sorted(r.key for r in two_rounds.records)
    cfg = _config(tiny_encoder_dir, tmp_path / "out", cache_dir=tmp_path / "empty", rounds=2)
    ctx = StageContext(StageCache(tmp_path / "empty"), cfg, progress=False)
    plan = planned_stages(ctx, {"es": LanguageStages(ctx, stages.read_source(cfg), "es", {})})
    assert sorted(s.key for s in plan) == keys and not any(s.cached for s in plan)
    seen: set[str] = set()
    for s in plan:
        assert all(n in seen for n in s.needs if n in keys), f"{s.label} listed before what it needs"
        seen.add(s.key)
