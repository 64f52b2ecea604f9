"""`seed_spread.py --merge`: the multi-seed table in benchmarks/README.md is made by it."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "seed_spread.py"


@pytest.fixture(scope="module")
def seed_spread():
    spec = importlib.util.spec_from_file_location("seed_spread", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _result(path: Path, machine: str, runs: list[tuple[str, int, float, float]]) -> Path:
    data = {
        "machine": machine,
        "runs": [
            {"recipe": r, "seed": s, "f1": {"en/dev": dev, "es/test": es, "nl/test": es + 2}}
            for r, s, dev, es in runs
        ],
    }
    path.write_text(json.dumps(data))
    return path


def test_merge_pools_calls_and_keeps_each_run_once(seed_spread, tmp_path, capsys) -> None:
    a = _result(tmp_path / "a.json", "cpu", [("hf", 1, 90.0, 60.0), ("unitrans", 1, 91.0, 62.0)])
    b = _result(tmp_path / "b.json", "cpu", [("unitrans", 2, 93.0, 64.0), ("unitrans", 1, 91.0, 62.0)])
    c = _result(tmp_path / "c.json", "gpu", [("hf", 2, 92.0, 66.0)])
    assert seed_spread.main(["--merge", str(a), str(b), str(c)]) == 0
    out = capsys.readouterr().out
    assert out.count("unitrans  ") >= 2 and "gpu" in out  # per-run lines name their machine
    rows = {line.split()[0]: line for line in out.splitlines() if "±" in line}
    # unitrans: seeds 1 and 2 once each (the repeat of seed 1 in b.json is not counted twice)
    assert "92.00 ± 1.41" in rows["unitrans"]  # en/dev
    assert "64.00 ± 1.41" in rows["unitrans"]  # target average: (62+64)/2 and (64+66)/2
    assert "91.00 ± 1.41" in rows["hf"]


def test_summarize_skips_english_in_the_target_average(seed_spread) -> None:
    runs = [{"recipe": "hf", "seed": 1, "f1": {"en/dev": 99.0, "en/test": 98.0, "es/test": 50.0}}]
    summary = seed_spread.summarize(runs)
    assert summary["hf"]["target_avg"] == {"mean": 50.0, "std": None}


def test_merge_of_a_bad_file_is_one_line_and_exit_2(seed_spread, tmp_path, capsys) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"runs": [{"seed": 1}]}')
    assert seed_spread.main(["--merge", str(bad)]) == 2
    assert seed_spread.main(["--merge", str(tmp_path / "missing.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("error: ") for line in err)


def test_tails_score_the_plain_run_and_its_averages_from_one_training(seed_spread, tmp_path) -> None:
    from conftest import build_tiny_encoder
    from unitrans.model.predict import load_probs

    encoder = build_tiny_encoder(tmp_path / "encoder", layers=4)  # the recipes freeze 3 layers
    fixtures = Path(__file__).resolve().parent / "fixtures" / "model"
    data = tmp_path / "data"
    for name, source in [("en/train", "train"), ("en/dev", "test"), ("en/test", "test"), ("es/test", "test")]:
        (data / name).parent.mkdir(parents=True, exist_ok=True)
        (data / f"{name}.txt").write_text((fixtures / f"{source}.txt").read_text())
    common = ["--data", str(data), "--encoder", str(encoder), "--seeds", "3", "--epochs", "6",
              "--langs", "es", "--quiet"]  # fmt: skip
    assert seed_spread.main([*common, "--recipes", "unitrans-tails", "--out", str(tmp_path / "t.json"),
                             "--work", str(tmp_path / "t")]) == 0  # fmt: skip
    assert seed_spread.main([*common, "--recipes", "unitrans", "--out", str(tmp_path / "u.json"),
                             "--work", str(tmp_path / "u")]) == 0  # fmt: skip
    runs = json.loads((tmp_path / "t.json").read_text())["runs"]
    assert [r["recipe"] for r in runs] == ["unitrans", "unitrans-avg-third", "unitrans-avg-two-thirds"]
    assert all("error" not in r for r in runs)

    def probs(folder: Path):
        return load_probs(folder / "probs" / "es-test.npz")[0]

    plain, alone = probs(tmp_path / "t" / "unitrans-s3"), probs(tmp_path / "u" / "unitrans-s3")
    third = probs(tmp_path / "t" / "unitrans-avg-third-s3")
    assert all((a == b).all() for a, b in zip(plain, alone, strict=True))  # the paired run is today's default
    assert any((a != b).any() for a, b in zip(plain, third, strict=True))
