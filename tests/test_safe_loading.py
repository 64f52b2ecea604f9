"""Nothing read from disk runs code; model, device and output mistakes are one line; files get umask modes.

Covers the resume state (pickle payloads, truncated or misfitting states, leftover temp files), model
folders with custom code (`auto_map`), bare encoders and broken checkpoints given to `predict`/`tag`,
`--device`, `--batch-size`, unwritable `--out`/`--probs` caught before any work, and the modes of every
file unitrans writes for a model, its probabilities, its resume state and cached embeddings.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import os
import pickle
import shutil
import stat
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import get_linear_schedule_with_warmup

from unitrans.cli import main
from unitrans.data import CONLL_LABELS, Sentence
from unitrans.errors import UnitransError
from unitrans.model import predict as prediction
from unitrans.model.tagger import load_tagger, save_tagger
from unitrans.train import resume, supervised
from unitrans.train.averaging import TailAverage
from unitrans.train.supervised import TrainConfig, train_tagger

FIXTURES = Path(__file__).parent / "fixtures" / "model"

TRAIN = [
    Sentence(("John", "Smith", "visited", "Madrid", "."), ("B-PER", "I-PER", "O", "B-LOC", "O")),
    Sentence(("Google", "said", "."), ("B-ORG", "O", "O")),
] * 4


def config(encoder: Path, **kw) -> TrainConfig:
    base = dict(encoder=str(encoder), epochs=1, batch_size=4, freeze_layers=1, max_length=16, lr=1e-3)
    return TrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def checkpoint(tiny_encoder_dir, tmp_path_factory) -> Path:
    """A tiny trained tagger (read-only for the tests: copy it before breaking it)."""
    return train_tagger(
        TRAIN, tmp_path_factory.mktemp("ckpt") / "m", config(tiny_encoder_dir), progress=False
    )


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("unitrans: error: ")
    return err[0]


class Payload:
    """Unpickling this calls `os.mkdir(marker)`: the marker's existence proves the pickle ran code."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


# --- 1. the resume state never runs code; a bad one is ignored with one warning ----------------------


def write_payload(path: Path, marker: Path, form: str) -> None:
    payload = {"key": "x", "step": 1, "evil": Payload(marker)}
    if form == "torch-zip":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload))


@pytest.mark.parametrize("form", ["torch-zip", "raw-pickle"])
def test_a_pickle_payload_as_resume_state_is_not_run_and_training_completes(
    tiny_encoder_dir, tmp_path, caplog, form
):
    # The fixture is live: the old unsafe load runs it (so this test can fail).
    control = tmp_path / "CONTROL"
    write_payload(tmp_path / "control.pt", control, form)
    with contextlib.suppress(Exception):  # the raw pickle has no torch header; its code has run by then
        torch.load(tmp_path / "control.pt", map_location="cpu", weights_only=False)
    assert control.is_dir()

    out, marker = tmp_path / "model", tmp_path / "MARKER"
    out.mkdir()
    state = out / resume.STATE_FILE
    write_payload(state, marker, form)
    with caplog.at_level(logging.WARNING):
        folder = train_tagger(TRAIN, out, config(tiny_encoder_dir), progress=False)
    assert not marker.exists()
    meta = json.loads((folder / "unitrans.json").read_text())
    assert meta["train"]["resumed_from_step"] == 0
    assert not state.exists()
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING and resume.STATE_FILE in r.message]
    assert len(warnings) == 1 and "\n" not in warnings[0].getMessage()


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "not-a-dict"])
def test_a_broken_resume_state_is_ignored_with_one_warning(tiny_encoder_dir, tmp_path, caplog, damage):
    out = tmp_path / "model"
    out.mkdir()
    state = out / resume.STATE_FILE
    torch.save({"key": "k", "step": 3, "trainable": {"w": torch.zeros(1000)}}, state)
    data = state.read_bytes()
    broken = {
        "truncated": data[: len(data) // 2],
        "garbage": os.urandom(4096),
        "empty": b"",
        "not-a-dict": b"",
    }[damage]
    if damage == "not-a-dict":
        torch.save([1, 2, 3], state)
    else:
        state.write_bytes(broken)
    with caplog.at_level(logging.WARNING):
        folder = train_tagger(TRAIN, out, config(tiny_encoder_dir), progress=False)
    assert json.loads((folder / "unitrans.json").read_text())["train"]["resumed_from_step"] == 0
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "starting afresh" in warnings[0].getMessage()


def _tiny_run(in_features: int, steps: int = 3, average: bool = True):
    """A model, fused AdamW, linear schedule and tail average after `steps` steps (all seeded)."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(in_features, 3), torch.nn.LayerNorm(3))
    model[1].weight.requires_grad_(False)  # a frozen weight is not part of the state
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.1, fused=True)
    scheduler = get_linear_schedule_with_warmup(optimizer, 2, 10)
    avg = TailAverage(model, total=10, share=0.9) if average else None
    for done in range(1, steps + 1):
        model(torch.ones(2, in_features)).square().sum().backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        if avg is not None:
            avg.update(done)
    return model, optimizer, scheduler, avg


def test_optimizer_scheduler_and_average_round_trip_through_a_safe_load(tmp_path):
    model, optimizer, scheduler, avg = _tiny_run(4)
    resume.save_state(
        tmp_path, model=model, optimizer=optimizer, scheduler=scheduler, step=3, key="k", average=avg
    )
    torch.load(tmp_path / resume.STATE_FILE, weights_only=True)  # loadable without unpickling objects
    fresh, opt2, sched2, avg2 = _tiny_run(4, steps=0)
    assert (
        resume.load_state(tmp_path, model=fresh, optimizer=opt2, scheduler=sched2, key="k", average=avg2) == 3
    )
    assert all(
        torch.equal(a, b)
        for a, b in zip(model.state_dict().values(), fresh.state_dict().values(), strict=True)
    )
    saved, loaded = optimizer.state_dict(), opt2.state_dict()
    for pid, values in saved["state"].items():
        assert all(torch.equal(values[k], loaded["state"][pid][k]) for k in values)
    assert sched2.state_dict()["last_epoch"] == scheduler.state_dict()["last_epoch"] == 3
    assert avg2.count == avg.count == 2
    assert all(torch.equal(avg.sums[n], avg2.sums[n]) for n in avg.sums)
    # the next steps continue identically
    for m, o, s in ((model, optimizer, scheduler), (fresh, opt2, sched2)):
        m(torch.ones(2, 4)).square().sum().backward()
        o.step()
        s.step()
    assert all(
        torch.equal(a, b)
        for a, b in zip(model.state_dict().values(), fresh.state_dict().values(), strict=True)
    )


def test_a_state_that_does_not_fit_the_model_changes_nothing(tmp_path, caplog):
    model, optimizer, scheduler, avg = _tiny_run(4)
    resume.save_state(
        tmp_path, model=model, optimizer=optimizer, scheduler=scheduler, step=3, key="k", average=avg
    )
    other, opt2, sched2, avg2 = _tiny_run(5, steps=0)  # same names, other shapes
    before = {n: t.clone() for n, t in other.state_dict().items()}
    with caplog.at_level(logging.WARNING):
        got = resume.load_state(
            tmp_path, model=other, optimizer=opt2, scheduler=sched2, key="k", average=avg2
        )
    assert got == 0
    assert all(torch.equal(before[n], t) for n, t in other.state_dict().items())
    assert opt2.state_dict()["state"] == {} and sched2.state_dict()["last_epoch"] == 0 and avg2.count == 0
    assert len([r for r in caplog.records if r.levelno >= logging.WARNING]) == 1


# --- 2. temp files of killed state saves are removed at start and at the end -------------------------


def test_leftover_state_temp_files_are_removed_at_start_and_end(tiny_encoder_dir, tmp_path):
    out = tmp_path / "model"
    out.mkdir()
    old_style = out / f".{resume.STATE_FILE}.k3j4h5"  # mkstemp name of unitrans before `atomic`
    new_style = out / f".{resume.STATE_FILE}.a8b9c0.tmp"  # `atomic_path`'s name
    for path in (old_style, new_style):
        path.write_bytes(b"\0" * 1024)
    unrelated = out / ".notes.txt"
    unrelated.write_text("mine")
    seen_at_first_step: list[bool] = []
    mid_run = out / f".{resume.STATE_FILE}.killed1.tmp"

    def on_step(done, total, model):
        if done == 1:
            seen_at_first_step.append(old_style.exists() or new_style.exists())
            mid_run.write_bytes(b"\0" * 1024)  # as if a save died while this run went on

    train_tagger(TRAIN, out, config(tiny_encoder_dir), progress=False, on_step=on_step)
    assert seen_at_first_step == [False]
    assert not mid_run.exists() and not old_style.exists() and not new_style.exists()
    assert unrelated.read_text() == "mine"
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == [".notes.txt"]


def test_clear_state_removes_state_and_temps_only(tmp_path):
    (tmp_path / resume.STATE_FILE).write_bytes(b"x")
    (tmp_path / f".{resume.STATE_FILE}.abc").write_bytes(b"x")
    (tmp_path / ".unitrans.json.abc.tmp").write_bytes(b"x")  # not ours to remove here
    resume.clear_state(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".unitrans.json.abc.tmp"]


# --- 3. model folders with custom code are refused before transformers sees them ---------------------


def custom_code_folder(src: Path, dest: Path, marker: Path, where: str = "config.json") -> Path:
    """A copy of `src` whose `where` has an auto_map to a module that creates `marker` on import."""
    shutil.copytree(src, dest)
    (dest / "evil.py").write_text(
        f"import os\nos.makedirs({str(marker)!r}, exist_ok=True)\n"
        "from transformers import BertConfig, BertForTokenClassification, PreTrainedTokenizerFast\n"
        "class EvilConfig(BertConfig):\n    model_type = 'bert'\n"
        "class EvilModel(BertForTokenClassification):\n    config_class = EvilConfig\n"
        "class EvilTokenizer(PreTrainedTokenizerFast):\n    pass\n"
    )
    path = dest / where
    data = json.loads(path.read_text())
    data["auto_map"] = (
        {"AutoConfig": "evil.EvilConfig", "AutoModelForTokenClassification": "evil.EvilModel"}
        if where == "config.json"
        else {"AutoTokenizer": [None, "evil.EvilTokenizer"]}
    )
    path.write_text(json.dumps(data))
    return dest


@pytest.mark.parametrize("where", ["config.json", "tokenizer_config.json"])
def test_predict_refuses_a_model_folder_with_custom_code(checkpoint, tmp_path, capsys, monkeypatch, where):
    marker = tmp_path / "MARKER"
    model = custom_code_folder(checkpoint, tmp_path / "evil", marker, where)
    stdin = io.StringIO("y\ny\ny\n")  # a prompt would read "y" and run the code
    monkeypatch.setattr(sys, "stdin", stdin)
    out = tmp_path / "pred.txt"
    code = main(["predict", "--model", str(model), "--input", str(FIXTURES / "test.txt"), "--out", str(out)])
    assert code == 2
    line = one_error_line(capsys)
    assert "custom code (auto_map" in line and "never runs code" in line and str(model) in line
    assert not marker.exists() and stdin.tell() == 0 and not out.exists()


def _train_args(out: Path, encoder: Path) -> list[str]:
    return ["train", "--train", str(FIXTURES / "train.txt"), "--out", str(out), "--encoder", str(encoder)]


def test_train_and_encoder_info_refuse_an_encoder_with_custom_code(tiny_encoder_dir, tmp_path, capsys):
    marker = tmp_path / "MARKER"
    enc = custom_code_folder(tiny_encoder_dir, tmp_path / "evil", marker)
    train = _train_args(tmp_path / "m", enc)
    assert main(train) == 2
    assert "custom code (auto_map" in one_error_line(capsys)
    assert main(["encoder", "info", str(enc)]) == 2
    assert "custom code (auto_map" in one_error_line(capsys)
    assert not marker.exists()


def test_every_from_pretrained_call_passes_trust_remote_code_false(
    checkpoint, tiny_encoder_dir, tmp_path, monkeypatch
):
    import transformers

    from unitrans.model.encoders import encoder_info
    from unitrans.translate.encoder_vectors import TypeVectorConfig, type_vectors

    calls: list[tuple[str, dict]] = []
    for name in ("AutoConfig", "AutoModel", "AutoTokenizer", "AutoModelForTokenClassification"):
        cls = getattr(transformers, name)
        original = cls.from_pretrained

        def spy(*args, _name=name, _original=original, **kwargs):
            calls.append((_name, kwargs))
            return _original(*args, **kwargs)

        monkeypatch.setattr(cls, "from_pretrained", spy)

    load_tagger(tiny_encoder_dir, CONLL_LABELS)
    prediction.predict_probs(checkpoint, [Sentence(("John", "said"))], progress=False)
    prediction.model_labels(checkpoint)
    encoder_info(str(tiny_encoder_dir))
    type_vectors(
        [Sentence(("John", "visited", "Madrid"))],
        TypeVectorConfig(encoder=str(tiny_encoder_dir), layers=(1,)),
        cache_dir=tmp_path / "cache",
        progress=False,
    )
    names = {name for name, _ in calls}
    assert names == {"AutoConfig", "AutoModel", "AutoTokenizer", "AutoModelForTokenClassification"}
    assert all(kwargs.get("trust_remote_code") is False for _, kwargs in calls), calls


# --- 4. device, batch size and model folder mistakes are one line, before any work -------------------


def _fail_if_called(*args, **kwargs):
    raise AssertionError("the work started before the user's mistake was reported")


@pytest.mark.parametrize("device", ["foo", "cuda", "cuda:0"])
def test_train_rejects_a_missing_device_before_reading_data(tmp_path, capsys, monkeypatch, device):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(supervised, "train_tagger", _fail_if_called)
    args = [
        "train",
        "--train",
        str(tmp_path / "absent.txt"),
        "--out",
        str(tmp_path / "m"),
        "--device",
        device,
    ]
    assert main(args) == 2
    line = one_error_line(capsys)
    assert device in line and ("unknown device" in line or "CUDA is not available" in line)


@pytest.mark.parametrize("device", ["foo", "cuda"])
def test_predict_rejects_a_missing_device_before_loading(checkpoint, tmp_path, capsys, monkeypatch, device):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(prediction, "predict_probs", _fail_if_called)
    args = ["predict", "--model", str(checkpoint), "--input", str(FIXTURES / "test.txt")]
    assert main([*args, "--out", str(tmp_path / "p.txt"), "--device", device]) == 2
    assert device in one_error_line(capsys)


def test_library_calls_reject_a_missing_device(checkpoint, tiny_encoder_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UnitransError, match="CUDA is not available"):
        prediction.predict_probs(checkpoint, [Sentence(("John",))], device="cuda", progress=False)
    with pytest.raises(UnitransError, match="unknown device"):
        train_tagger(TRAIN, tmp_path / "m", config(tiny_encoder_dir, device="gpu"), progress=False)


@pytest.mark.parametrize("size", ["0", "-3"])
def test_predict_rejects_a_batch_size_below_one(checkpoint, tmp_path, capsys, monkeypatch, size):
    monkeypatch.setattr(prediction, "predict_probs", _fail_if_called)
    args = ["predict", "--model", str(checkpoint), "--input", str(FIXTURES / "test.txt")]
    assert main([*args, "--out", str(tmp_path / "p.txt"), "--batch-size", size]) == 2
    assert "batch size" in one_error_line(capsys)
    with pytest.raises(UnitransError, match="batch size"):
        prediction.check_batch_size(int(size))


def test_predict_and_tag_on_a_bare_encoder_say_it_is_not_a_tagger(tiny_encoder_dir, tmp_path, capsys):
    text = tmp_path / "in.txt"
    text.write_text("John visited Madrid .\n")
    args = ["predict", "--model", str(tiny_encoder_dir), "--input", str(text), "--out", str(tmp_path / "p")]
    assert main(args) == 2
    line = one_error_line(capsys)
    assert str(tiny_encoder_dir) in line and "not a unitrans tagger" in line and "unitrans train" in line
    assert main(["tag", "--model", str(tiny_encoder_dir), str(text)]) == 2
    assert "not a unitrans tagger" in one_error_line(capsys)
    with pytest.raises(UnitransError, match="not a unitrans tagger"):
        prediction.predict_probs(tiny_encoder_dir, [Sentence(("John",))], progress=False)


def _break_config_missing(folder: Path) -> None:
    (folder / "config.json").unlink()


def _break_config_json(folder: Path) -> None:
    (folder / "config.json").write_text('{"model_type": "bert", ')


def _break_config_type(folder: Path) -> None:
    (folder / "config.json").write_text('["not", "an", "object"]')


def _break_weights_truncated(folder: Path) -> None:
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])


def _break_weights_missing(folder: Path) -> None:
    (folder / "model.safetensors").unlink()


def _break_tokenizer(folder: Path) -> None:
    (folder / "tokenizer.json").write_text("{bad json")


@pytest.mark.parametrize(
    "damage",
    [
        _break_config_missing,
        _break_config_json,
        _break_config_type,
        _break_weights_truncated,
        _break_weights_missing,
        _break_tokenizer,
    ],
)
def test_predict_on_a_broken_checkpoint_is_one_line_naming_the_folder(checkpoint, tmp_path, capsys, damage):
    model = tmp_path / "broken"
    shutil.copytree(checkpoint, model)
    damage(model)
    out = tmp_path / "p.txt"
    assert (
        main(["predict", "--model", str(model), "--input", str(FIXTURES / "test.txt"), "--out", str(out)])
        == 2
    )
    assert str(model) in one_error_line(capsys)
    assert not out.exists()


def test_train_from_a_truncated_encoder_is_one_line(tiny_encoder_dir, tmp_path, capsys):
    enc = tmp_path / "enc"
    shutil.copytree(tiny_encoder_dir, enc)
    _break_weights_truncated(enc)
    args = _train_args(tmp_path / "m", enc)
    assert main(args) == 2
    assert str(enc) in one_error_line(capsys)


# --- 5. unwritable outputs fail before any work ------------------------------------------------------


@pytest.fixture
def a_file(tmp_path) -> Path:
    """A regular file: a path under it cannot be created, even by root (unlike a chmod 0500 folder)."""
    path = tmp_path / "a-file"
    path.write_text("x")
    return path


@pytest.mark.parametrize("kind", ["under-a-file", "is-a-file"])
def test_train_checks_out_before_any_work(a_file, tmp_path, capsys, monkeypatch, kind):
    monkeypatch.setattr(supervised, "train_tagger", _fail_if_called)
    out = a_file / "model" if kind == "under-a-file" else a_file
    args = ["train", "--train", str(tmp_path / "absent.txt"), "--out", str(out)]
    assert main(args) == 2
    line = one_error_line(capsys)
    assert str(out) in line and "output folder" in line


def test_train_tagger_checks_out_before_loading(tiny_encoder_dir, a_file, monkeypatch):
    monkeypatch.setattr(supervised, "load_tagger", _fail_if_called)
    with pytest.raises(UnitransError, match="not writable"):
        train_tagger(TRAIN, a_file / "model", config(tiny_encoder_dir), progress=False)


@pytest.mark.parametrize("which", ["out", "probs", "out-is-a-folder"])
def test_predict_checks_out_and_probs_before_any_work(
    checkpoint, a_file, tmp_path, capsys, monkeypatch, which
):
    monkeypatch.setattr(prediction, "predict_probs", _fail_if_called)
    monkeypatch.setattr(prediction, "model_labels", _fail_if_called)
    out, probs = tmp_path / "p.txt", tmp_path / "p.npz"
    if which == "out":
        out = a_file / "p.txt"
    elif which == "probs":
        probs = a_file / "p.npz"
    else:
        out = tmp_path
    args = ["predict", "--model", str(checkpoint), "--input", str(FIXTURES / "test.txt")]
    assert main([*args, "--out", str(out), "--probs", str(probs)]) == 2
    line = one_error_line(capsys)
    assert ("--probs" if which == "probs" else "--out") in line


# --- 6. files get the umask's mode -------------------------------------------------------------------


@pytest.fixture(params=[0o022, 0o027])
def umask(request):
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def modes(root: Path) -> dict[str, int]:
    found = {root.name: stat.S_IMODE(root.stat().st_mode)}
    for path in root.rglob("*"):
        found[str(path.relative_to(root))] = stat.S_IMODE(path.stat().st_mode)
    return found


def test_model_probs_state_and_embeddings_get_the_umask_mode(checkpoint, tmp_path, umask):
    from unitrans.translate.embeddings import WordEmbeddings, save_npz

    file_mode, dir_mode = 0o666 & ~umask, 0o777 & ~umask
    model, tokenizer = load_tagger(checkpoint)
    folder = save_tagger(model, tokenizer, tmp_path / "saved" / "model", {"labels": list(CONLL_LABELS)})
    found = modes(folder)
    assert {"config.json", "model.safetensors", "tokenizer.json", "unitrans.json"} <= set(found)
    for name, mode in found.items():
        is_dir = (folder / name).is_dir() if name != folder.name else True
        assert mode == (dir_mode if is_dir else file_mode), (name, oct(mode))
    assert not [n for n in found if n.startswith(".")]  # the .saving- folder is gone

    probs = tmp_path / "out" / "probs.npz"
    prediction.save_probs(probs, [np.full((2, 9), 1 / 9, dtype=np.float32)], CONLL_LABELS)
    assert stat.S_IMODE(probs.stat().st_mode) == file_mode

    net, optimizer, scheduler, _ = _tiny_run(4)
    resume.save_state(tmp_path / "st", model=net, optimizer=optimizer, scheduler=scheduler, step=1, key="k")
    assert stat.S_IMODE((tmp_path / "st" / resume.STATE_FILE).stat().st_mode) == file_mode

    emb = tmp_path / "emb.npz"
    save_npz(emb, {"1": WordEmbeddings(("a", "b"), np.eye(2, dtype=np.float32), np.array([2, 1]))})
    assert stat.S_IMODE(emb.stat().st_mode) == file_mode
    assert not [p for p in tmp_path.rglob(".*")]  # no temp file left anywhere
    assert math.isclose(float(np.load(probs)["probs"].sum()), 2.0, rel_tol=1e-5)


def test_train_and_predict_outputs_have_umask_modes(tiny_encoder_dir, tmp_path, umask):
    folder = train_tagger(TRAIN, tmp_path / "m", config(tiny_encoder_dir), progress=False)
    file_mode, dir_mode = 0o666 & ~umask, 0o777 & ~umask
    assert stat.S_IMODE(folder.stat().st_mode) == dir_mode
    for path in folder.rglob("*"):
        want = dir_mode if path.is_dir() else file_mode
        assert stat.S_IMODE(path.stat().st_mode) == want, (path.name, oct(path.stat().st_mode))
    pred, probs = tmp_path / "out" / "pred.txt", tmp_path / "out" / "probs.npz"
    args = ["predict", "--model", str(folder), "--input", str(FIXTURES / "test.txt")]
    assert main([*args, "--out", str(pred), "--probs", str(probs)]) == 0
    assert stat.S_IMODE(pred.stat().st_mode) == stat.S_IMODE(probs.stat().st_mode) == file_mode
