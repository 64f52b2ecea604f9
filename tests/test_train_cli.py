"""`unitrans train`, `predict` and `evaluate` end to end on a tiny fixture."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from unitrans.cli import main
from unitrans.model.predict import load_probs

FIXTURES = Path(__file__).parent / "fixtures" / "model"


def test_train_predict_evaluate(tiny_encoder_dir, tmp_path, capsys):
    model = tmp_path / "model"
    args = [
        "train",
        "--train",
        str(FIXTURES / "train.txt"),
        "--out",
        str(model),
        "--encoder",
        str(tiny_encoder_dir),
        "--freeze-layers",
        "1",
    ]
    assert main([*args, "--epochs", "2", "--batch-size", "2", "--lr", "1e-3", "--seed", "7"]) == 0
    meta = json.loads((model / "unitrans.json").read_text())
    assert meta["seed"] == 7 and meta["config"]["epochs"] == 2 and meta["encoder"] == str(tiny_encoder_dir)
    assert (model / "config.json").is_file() and (model / "tokenizer.json").is_file()

    pred, probs = tmp_path / "pred.txt", tmp_path / "probs.npz"
    test = FIXTURES / "test.txt"
    cmd = ["predict", "--model", str(model), "--input", str(test), "--out", str(pred), "--probs", str(probs)]
    assert main(cmd) == 0
    lines = [line.split() for line in pred.read_text().splitlines() if line.strip()]
    gold = [line.split() for line in test.read_text().splitlines() if line.strip()]
    assert [w for w, _ in lines] == [w for w, _ in gold]
    matrices, labels = load_probs(probs)
    assert sum(len(m) for m in matrices) == len(gold) and len(labels) == 9
    assert [t for _, t in lines] == [t for _, t in lines if t in labels]
    capsys.readouterr()

    assert main(["evaluate", "--gold", str(test), "--pred", str(pred), "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert 0.0 <= scores["overall"]["f1"] <= 1.0


def test_continue_from_init(tiny_encoder_dir, tmp_path):
    train = str(FIXTURES / "train.txt")
    base = [
        "train",
        "--train",
        train,
        "--encoder",
        str(tiny_encoder_dir),
        "--epochs",
        "1",
        "--freeze-layers",
        "1",
    ]
    assert main([*base, "--out", str(tmp_path / "src")]) == 0
    assert main([*base, "--out", str(tmp_path / "teach"), "--init", str(tmp_path / "src")]) == 0
    meta = json.loads((tmp_path / "teach" / "unitrans.json").read_text())
    assert meta["init"] == str(tmp_path / "src") and meta["encoder"] == str(tiny_encoder_dir)


def test_user_mistakes_exit_2_with_one_line(tmp_path, capsys):
    assert main(["predict", "--model", str(tmp_path), "--input", "x", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "checkpoint" in err[0]
    bad = tmp_path / "bad.txt"
    bad.write_text("John B-PER\nSmith\n")
    assert main(["train", "--train", str(bad), "--out", str(tmp_path / "m")]) == 2
    assert "bad.txt:" in capsys.readouterr().err
    assert (
        main(["train", "--train", str(FIXTURES / "train.txt"), "--out", str(tmp_path / "m"), "--epochs", "0"])
        == 2
    )
    np.testing.assert_equal(True, True)


def test_average_last_option_reaches_the_saved_config(tiny_encoder_dir, tmp_path, capsys):
    base = ["train", "--train", str(FIXTURES / "train.txt"), "--encoder", str(tiny_encoder_dir),
            "--epochs", "2", "--freeze-layers", "1"]  # fmt: skip
    assert main([*base, "--out", str(tmp_path / "avg"), "--average-last", "0.5"]) == 0
    meta = json.loads((tmp_path / "avg" / "unitrans.json").read_text())
    assert meta["config"]["average_last"] == 0.5
    assert main([*base, "--out", str(tmp_path / "bad"), "--average-last", "1.5"]) == 2
    assert "average_last must be in [0, 1]" in capsys.readouterr().err


def test_processes_and_merge_init_options_reach_the_saved_config(tiny_encoder_dir, tmp_path, capsys):
    base = ["train", "--train", str(FIXTURES / "train.txt"), "--encoder", str(tiny_encoder_dir),
            "--epochs", "1", "--freeze-layers", "1"]  # fmt: skip
    assert main([*base, "--out", str(tmp_path / "src"), "--processes", "2"]) == 0
    assert json.loads((tmp_path / "src" / "unitrans.json").read_text())["config"]["processes"] == 2
    out = str(tmp_path / "teach")
    assert main([*base, "--out", out, "--init", str(tmp_path / "src"), "--merge-init", "0.5"]) == 0
    assert json.loads((tmp_path / "teach" / "unitrans.json").read_text())["config"]["merge_init"] == 0.5
    assert main([*base, "--out", str(tmp_path / "bad"), "--merge-init", "0.5"]) == 2  # no --init
    assert "give one (init)" in capsys.readouterr().err
    assert main([*base, "--out", str(tmp_path / "bad"), "--processes", "0"]) == 2
    assert "processes must be in [1, 64]" in capsys.readouterr().err
