"""The content-addressed stage cache: keys, skipping, atomic folders."""

from __future__ import annotations

import json

import pytest

from unitrans.pipeline.cache import StageCache, hash_rows, hash_text


def _writer(calls: list[str], text: str = "out"):
    def build(folder):
        calls.append(text)
        (folder / "out.txt").write_text(text)
        return {"score": 0.5}

    return build


def test_key_depends_on_settings_inputs_and_version(tmp_path):
    cache = StageCache(tmp_path)
    base = cache.key("train", {"lr": 1e-4}, {"data": "abc"})
    assert base == cache.key("train", {"lr": 1e-4}, {"data": "abc"})
    assert base != cache.key("train", {"lr": 5e-5}, {"data": "abc"})
    assert base != cache.key("train", {"lr": 1e-4}, {"data": "abd"})
    assert base != cache.key("probs", {"lr": 1e-4}, {"data": "abc"})
    assert base != StageCache(tmp_path, version="9.9").key("train", {"lr": 1e-4}, {"data": "abc"})


def test_hashes_are_unambiguous():
    assert hash_text("ab", "c") != hash_text("a", "bc")
    assert hash_rows([["a", "b"]]) != hash_rows([["a"], ["b"]])


def test_second_run_is_cached_and_keeps_manifest(tmp_path):
    cache = StageCache(tmp_path)
    calls: list[str] = []
    first = cache.run("train", {"lr": 1}, {}, _writer(calls), seed=3)
    second = cache.run("train", {"lr": 1}, {}, _writer(calls))
    assert calls == ["out"]
    assert not first.cached and second.cached
    assert first.folder == second.folder and (first.folder / "out.txt").read_text() == "out"
    manifest = json.loads((first.folder / "manifest.json").read_text())
    assert manifest["seed"] == 3 and manifest["settings"] == {"lr": 1}
    assert manifest["metrics"] == {"score": 0.5} and second.metrics == {"score": 0.5}
    assert manifest["seconds"] >= 0


def test_failed_stage_leaves_nothing_and_reruns(tmp_path):
    cache = StageCache(tmp_path)

    def boom(folder):
        (folder / "half.txt").write_text("x")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cache.run("train", {}, {}, boom)
    assert [p.name for p in (tmp_path / "train").iterdir()] == []
    assert cache.manifest("train", cache.key("train", {}, {})) is None
    calls: list[str] = []
    assert not cache.run("train", {}, {}, _writer(calls)).cached
    assert calls == ["out"]


def test_folder_without_manifest_is_rebuilt(tmp_path):
    cache = StageCache(tmp_path)
    calls: list[str] = []
    rec = cache.run("s", {}, {}, _writer(calls))
    (rec.folder / "manifest.json").unlink()
    again = cache.run("s", {}, {}, _writer(calls, "new"))
    assert not again.cached and (again.folder / "out.txt").read_text() == "new"


def test_resumable_stage_keeps_its_work_folder(tmp_path):
    cache = StageCache(tmp_path)
    seen: list[bool] = []

    def interrupted(folder):
        (folder / "state.txt").write_text("step 5")
        raise KeyboardInterrupt

    def resume(folder):
        seen.append((folder / "state.txt").is_file())
        return {}

    with pytest.raises(KeyboardInterrupt):
        cache.run("train", {}, {}, interrupted, resumable=True)
    rec = cache.run("train", {}, {}, resume, resumable=True)
    assert seen == [True] and (rec.folder / "state.txt").is_file()
    assert [p.name for p in (tmp_path / "train").iterdir()] == [rec.folder.name]


def test_concurrent_runs_build_a_stage_once(tmp_path):
    import threading

    cache = StageCache(tmp_path)
    calls: list[str] = []
    started = threading.Event()

    def slow(folder):
        started.set()
        calls.append("built")
        threading.Event().wait(0.3)
        (folder / "out.txt").write_text("x")
        return {}

    results = []
    first = threading.Thread(target=lambda: results.append(cache.run("s", {}, {}, slow)))
    first.start()
    started.wait()
    second = cache.run("s", {}, {}, slow)
    first.join()
    assert calls == ["built"] and second.cached and not results[0].cached


def test_the_cores_a_stage_ran_on_come_back_with_its_record(tmp_path):
    cache = StageCache(tmp_path)
    built = cache.run("s", {}, {}, lambda folder: None, runtime={"threads": 1, "cores": 2})
    again = cache.run("s", {}, {}, lambda folder: None)
    assert (built.cached, built.cores) == (False, 2) and (again.cached, again.cores) == (True, 2)
    older = cache.run("t", {}, {}, lambda folder: None, runtime={"threads": 1})  # before cores were kept
    assert older.cores == 1 and cache.run("t", {}, {}, lambda folder: None).cores == 1
