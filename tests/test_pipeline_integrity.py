"""Cache integrity: every file a stage wrote is recorded and checked on reuse; a damaged entry is rebuilt
with one warning; outputs are written with the umask's mode into folders checked before any work."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import torch

from unitrans.cli import main
from unitrans.errors import UnitransError
from unitrans.pipeline import stages
from unitrans.pipeline.cache import StageCache
from unitrans.pipeline.config import make_config
from unitrans.pipeline.runner import RunResult, run_pipeline

FIXTURES = Path(__file__).parent / "fixtures" / "pipeline"
TINY = {"epochs": 6, "teach_epochs": 4, "student_epochs": 10, "batch_size": 2, "max_length": 32,
        "freeze_layers": 1, "ensemble": 1, "teacher_lr": 2e-2, "student_lr": 2e-2, "workers": 1}  # fmt: skip
DAMAGED = "damaged cache entry"


def _build(calls: list[str], text: str = "hello"):
    def build(folder: Path) -> dict:
        calls.append(text)
        (folder / "out.txt").write_text(text)
        (folder / "sub").mkdir(exist_ok=True)
        (folder / "sub" / "data.bin").write_bytes(bytes(range(256)) * 4)
        return {"score": 0.5}

    return build


def _damage_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and DAMAGED in r.getMessage()
    ]


def test_manifest_records_size_and_sha256_of_every_file(tmp_path):
    rec = StageCache(tmp_path).run("s", {}, {}, _build([]))
    files = json.loads((rec.folder / "manifest.json").read_text())["files"]
    assert set(files) == {"out.txt", "sub/data.bin"}  # relative paths, the manifest itself excluded
    for rel, record in files.items():
        data = (rec.folder / rel).read_bytes()
        assert record == {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def _flip_byte(folder: Path) -> None:
    path = folder / "sub" / "data.bin"
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF
    path.write_bytes(bytes(data))


def _truncate_file(folder: Path) -> None:
    path = folder / "sub" / "data.bin"
    path.write_bytes(path.read_bytes()[:10])


def _truncate_manifest(folder: Path) -> None:
    path = folder / "manifest.json"
    path.write_bytes(path.read_bytes()[:40])


def _edit_metrics(folder: Path) -> None:
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["metrics"]["score"] = 0.99
    (folder / "manifest.json").write_text(json.dumps(manifest))


def _old_manifest(folder: Path) -> None:
    manifest = json.loads((folder / "manifest.json").read_text())
    del manifest["files"], manifest["digest"]
    (folder / "manifest.json").write_text(json.dumps(manifest))


DAMAGES = {
    "flipped byte": _flip_byte,
    "truncated file": _truncate_file,
    "missing file": lambda folder: (folder / "out.txt").unlink(),
    "missing manifest": lambda folder: (folder / "manifest.json").unlink(),
    "truncated manifest": _truncate_manifest,
    "manifest not JSON": lambda folder: (folder / "manifest.json").write_bytes(b"\xff\xfe{]"),
    "manifest edited": _edit_metrics,
    "old manifest without checksums": _old_manifest,
}


@pytest.mark.parametrize("damage", DAMAGES)
def test_damaged_entry_is_rebuilt_with_one_warning(tmp_path, caplog, damage):
    cache = StageCache(tmp_path)
    calls: list[str] = []
    first = cache.run("s", {}, {}, _build(calls))
    DAMAGES[damage](first.folder)
    with caplog.at_level(logging.WARNING):
        again = cache.run("s", {}, {}, _build(calls, "rebuilt"))
    assert calls == ["hello", "rebuilt"] and not again.cached and again.metrics == {"score": 0.5}
    assert (again.folder / "out.txt").read_text() == "rebuilt"
    assert _damage_warnings(caplog) == [_damage_warnings(caplog)[0]]
    assert str(first.folder) in _damage_warnings(caplog)[0] and "\n" not in _damage_warnings(caplog)[0]
    assert cache.run("s", {}, {}, _build(calls)).cached  # and the rebuilt entry is trusted again
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == [first.folder.name]  # nothing left aside


def test_size_mode_checks_sizes_only_and_is_not_part_of_the_key(tmp_path):
    full, quick = StageCache(tmp_path), StageCache(tmp_path, verify="size")
    assert full.key("s", {"a": 1}, {"x": "k"}) == quick.key("s", {"a": 1}, {"x": "k"})
    rec = full.run("s", {}, {}, _build([]))
    _flip_byte(rec.folder)  # same size: only a full check sees it
    assert quick.lookup("s", {}, {}) is not None
    assert full.lookup("s", {}, {}) is None
    rec = full.run("s", {}, {}, _build([]))
    _truncate_file(rec.folder)
    assert quick.lookup("s", {}, {}) is None


def test_lookup_removes_a_damaged_entry_so_the_rebuild_warns_once(tmp_path, caplog):
    cache = StageCache(tmp_path)
    calls: list[str] = []
    rec = cache.run("s", {}, {}, _build(calls))
    _flip_byte(rec.folder)
    with caplog.at_level(logging.WARNING):
        assert cache.lookup("s", {}, {}) is None  # what the worker pool's probe calls
        assert not rec.folder.exists()
        assert not StageCache(tmp_path).run("s", {}, {}, _build(calls)).cached  # e.g. in a worker
    assert len(_damage_warnings(caplog)) == 1 and calls == ["hello", "hello"]


def test_a_reused_entry_is_hashed_again_only_when_it_changed(tmp_path, monkeypatch):
    from unitrans.pipeline import integrity

    cache = StageCache(tmp_path)
    cache.run("s", {}, {}, _build([]))
    hashed: list[str] = []
    real = integrity.sha256_file
    monkeypatch.setattr(integrity, "sha256_file", lambda p: hashed.append(p.name) or real(p))
    assert cache.lookup("s", {}, {}) is not None and cache.lookup("s", {}, {}) is not None
    assert sorted(hashed) == ["data.bin", "out.txt"]
    (cache.folder("s", cache.key("s", {}, {})) / "out.txt").write_text("HELLO")  # same size, new content
    assert cache.lookup("s", {}, {}) is None


def test_unknown_verify_mode_is_a_user_error(tmp_path):
    with pytest.raises(UnitransError, match="expected verify among full, size, found 'fast'"):
        StageCache(tmp_path, verify="fast")


def test_temp_files_of_a_killed_attempt_never_reach_the_finished_folder(tmp_path):
    cache = StageCache(tmp_path)

    def killed(folder: Path) -> None:
        (folder / "model").mkdir()
        (folder / "model" / ".train-state.pt.abc123").write_bytes(b"half a state")  # kill -9 mid-save
        raise KeyboardInterrupt

    def resumed(folder: Path) -> dict:
        (folder / "model" / "weights.bin").write_bytes(b"w")
        return {}

    with pytest.raises(KeyboardInterrupt):
        cache.run("model", {}, {}, killed, resumable=True)
    rec = cache.run("model", {}, {}, resumed, resumable=True)
    assert sorted(p.name for p in (rec.folder / "model").iterdir()) == ["weights.bin"]
    assert set(json.loads((rec.folder / "manifest.json").read_text())["files"]) == {"model/weights.bin"}


@pytest.fixture
def umask_022():
    before = os.umask(0o022)
    yield
    os.umask(before)


def test_stage_files_get_the_umask_mode(tmp_path, umask_022):
    def private(folder: Path) -> dict:
        fd, name = tempfile.mkstemp(dir=folder)  # mode 0600, as some writers create files
        os.close(fd)
        os.replace(name, folder / "out.bin")
        return {}

    rec = StageCache(tmp_path).run("s", {}, {}, private)
    assert {p.name: p.stat().st_mode & 0o777 for p in rec.folder.iterdir()} == {
        "out.bin": 0o644,
        "manifest.json": 0o644,
    }


# --- on the tiny pipeline -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_run(tiny_encoder_dir, tmp_path_factory) -> RunResult:
    before_threads, before_mask = torch.get_num_threads(), os.umask(0o022)
    torch.set_num_threads(1)
    try:
        out = tmp_path_factory.mktemp("run")
        values = {"targets": ("es",), "data_dir": FIXTURES, "encoder": str(tiny_encoder_dir), "out_dir": out}
        config = make_config("paper", **values, variants=("src", "unitrans"), **TINY)
        yield run_pipeline(config, progress=False)
    finally:
        torch.set_num_threads(before_threads)
        os.umask(before_mask)


def test_every_output_file_has_the_umask_mode(tiny_run):
    out = tiny_run.paths["json"].parent
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) > 20 and (out / "runs.json") in files
    assert any(p.name == "manifest.json" for p in files) and any(p.suffix == ".npz" for p in files)
    modes = {str(p.relative_to(out)): p.stat().st_mode & 0o777 for p in files}
    assert {name: oct(mode) for name, mode in modes.items() if mode != 0o644} == {}


def _argv(encoder: str, out: Path, cache: Path) -> list[str]:
    sets = [f"--set={k}={v}" for k, v in TINY.items()]
    return ["run", "--target", "es", "--data-dir", str(FIXTURES), "--encoder", encoder, "--variants", "src",
            "unitrans", "--out", str(out), "--cache-dir", str(cache), "--no-progress", *sets]  # fmt: skip


def test_damaged_entries_are_rebuilt_to_the_same_weights_and_f1(
    tiny_run, tiny_encoder_dir, tmp_path, caplog, capsys
):
    out = tiny_run.paths["json"].parent
    cache = tmp_path / "cache"
    shutil.copytree(out / "cache", cache)
    by_label = {r.label: r for r in tiny_run.records}
    model = cache / by_label["train src (seed 42)"].folder.relative_to(out / "cache")
    probs = cache / by_label["es: src (seed 42) on test"].folder.relative_to(out / "cache")
    evaluation = cache / by_label["es: evaluate src (seed 42)"].folder.relative_to(out / "cache")
    weights = (model / "model" / "delta.safetensors").read_bytes()  # the cache holds compact models
    with open(model / "model" / "delta.safetensors", "r+b") as f:  # a disk error: zeroed bytes
        f.seek(len(weights) // 2)
        f.write(bytes(64))
    (probs / "probs.npz").write_bytes((probs / "probs.npz").read_bytes()[:100])  # a copy cut short
    _truncate_manifest(evaluation)  # a manifest cut short
    with caplog.at_level(logging.WARNING):
        code = main(_argv(str(tiny_encoder_dir), tmp_path / "out", cache))
    assert code == 0, capsys.readouterr().err
    warned = _damage_warnings(caplog)
    assert len(warned) == 3 and all("\n" not in w for w in warned)
    for folder in (model, probs, evaluation):
        assert sum(str(folder) in w for w in warned) == 1
    assert (model / "model" / "delta.safetensors").read_bytes() == weights
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results == json.loads((out / "results.json").read_text())
    err = capsys.readouterr().err
    assert "[ran in" in err and "train src (seed 42)" in err and "Traceback" not in err


@pytest.mark.parametrize("bad", ["out under a file", "out is a file", "cache under a file"])
def test_unwritable_outputs_fail_in_one_line_before_any_work(tmp_path, capsys, monkeypatch, bad):
    monkeypatch.setattr(stages, "read_source", lambda config: pytest.fail("work started"))
    blocker = tmp_path / "file"
    blocker.write_text("x")
    out = {"out under a file": blocker / "out", "out is a file": blocker}.get(bad, tmp_path / "out")
    cache = blocker / "cache" if bad == "cache under a file" else tmp_path / "cache"
    assert main(_argv("me5-small", out, cache)) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("unitrans: error: ")
    expected = {
        "out under a file": f"{out}: the output folder (--out) is not writable",
        "out is a file": f"{out}: the output folder (--out) is a file",
        "cache under a file": f"{cache}: the cache folder (--cache-dir) is not writable",
    }
    assert err.startswith(f"unitrans: error: {expected[bad]}")
    assert not (tmp_path / "out" / "config.json").exists() and not (tmp_path / "cache").exists()
