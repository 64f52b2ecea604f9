"""resolve_encoder for local folders and hub names, and the `unitrans encoder` commands (fast)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from huggingface_hub import constants

from unitrans.cli import main
from unitrans.errors import UnitransError
from unitrans.model import encoders
from unitrans.model.encoders import encoder_info, resolve_encoder


@pytest.fixture
def no_hub(monkeypatch, tmp_path):
    """An empty Hugging Face cache and a hub endpoint that refuses connections at once."""
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    for var in (
        "HF_HUB_OFFLINE",
        "TRANSFORMERS_OFFLINE",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    return tmp_path / "hf-cache"


def fake_hub_snapshot(cache: Path, repo_id: str, source: Path) -> Path:
    """Lay `source`'s files out as huggingface_hub caches a downloaded snapshot."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for file in source.iterdir():
        (snapshot / file.name).write_bytes(file.read_bytes())
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    return snapshot


def test_local_folder_resolves_to_itself(tiny_encoder_dir):
    assert resolve_encoder(str(tiny_encoder_dir)) == tiny_encoder_dir.resolve()


def test_local_folder_problems_are_one_line_errors(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"x")
    cases = {
        str(tmp_path / "missing"): "does not exist",
        str(tmp_path / "weights.bin"): "is a file",
        str(tmp_path): "has no config.json",
    }
    for name, reason in cases.items():
        with pytest.raises(UnitransError, match=reason) as err:
            resolve_encoder(name)
        assert "\n" not in str(err.value)


def test_hub_name_found_in_local_cache(no_hub, tiny_encoder_dir):
    snapshot = fake_hub_snapshot(no_hub, "someone/tiny-bert", tiny_encoder_dir)
    assert resolve_encoder("someone/tiny-bert") == snapshot


def test_cached_snapshot_without_weights_is_not_used(no_hub, tiny_encoder_dir, monkeypatch):
    snapshot = fake_hub_snapshot(no_hub, "someone/tiny-bert", tiny_encoder_dir)
    (snapshot / "model.safetensors").unlink()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UnitransError, match="not in the local Hugging Face cache"):
        resolve_encoder("someone/tiny-bert")


def test_hub_name_offline_fails_fast_naming_alternatives(no_hub, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(UnitransError, match="HF_HUB_OFFLINE is set") as err:
        resolve_encoder("bert-base-multilingual-cased")
    assert time.perf_counter() - start < 5
    message = str(err.value)
    assert "me5-small" in message and "local model folder" in message and "hub access" in message
    assert "\n" not in message


def test_hub_name_unreachable_fails_fast(no_hub):
    start = time.perf_counter()
    with pytest.raises(UnitransError, match=r"hub is unreachable \(cannot connect to 127\.0\.0\.1:9"):
        resolve_encoder("xlm-roberta-base")
    assert time.perf_counter() - start < 5


def test_invalid_name_is_reported(no_hub):
    with pytest.raises(UnitransError, match="neither a folder nor a valid hub name"):
        resolve_encoder("not a/valid name")
    with pytest.raises(UnitransError, match="empty encoder name"):
        resolve_encoder("  ")


def test_encoder_info_reads_the_config(tiny_encoder_dir):
    info = encoder_info(str(tiny_encoder_dir))
    assert (info.model_type, info.layers, info.hidden_size, info.heads) == ("bert", 2, 32, 2)
    assert info.vocab_size == json.loads((tiny_encoder_dir / "config.json").read_text())["vocab_size"]


def test_cli_prepare_and_info(tiny_encoder_dir, capsys):
    assert main(["encoder", "prepare", str(tiny_encoder_dir)]) == 0
    assert capsys.readouterr().out.strip() == str(tiny_encoder_dir.resolve())
    assert main(["encoder", "info", "--json", str(tiny_encoder_dir)]) == 0
    details = json.loads(capsys.readouterr().out)
    assert details["layers"] == 2 and details["hidden_size"] == 32
    assert details["folder"] == str(tiny_encoder_dir.resolve())


def test_cli_bad_name_exits_2_with_one_line(no_hub, capsys):
    assert main(["encoder", "prepare", "xlm-roberta-base"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("unitrans: error: encoder 'xlm-roberta-base'") and "\n" not in err


def test_me5_small_is_routed_to_the_builder(monkeypatch, tmp_path):
    seen: list[Path | None] = []
    monkeypatch.setattr(encoders, "build_me5_small", lambda cache_dir: seen.append(cache_dir) or tmp_path)
    assert resolve_encoder("me5-small", cache_dir=tmp_path / "root") == tmp_path
    assert seen == [tmp_path / "root"]


def _http_error(cls: type, status: int) -> Exception:
    """An instance of a hub HTTP error without a real HTTP response (their constructors want one)."""
    err = cls.__new__(cls)
    OSError.__init__(err, f"{status} Client Error\nsecond line of detail")
    return err


def test_online_hub_errors_become_one_line(no_hub, tiny_encoder_dir, monkeypatch, tmp_path):
    import huggingface_hub
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError

    monkeypatch.setattr(encoders, "_hub_unreachable_reason", lambda: None)
    outcome: dict[str, object] = {}

    def fake_download(name: str, *, allow_patterns: list[str], local_files_only: bool = False) -> str:
        if local_files_only:
            raise LocalEntryNotFoundError("not cached")
        outcome.setdefault("patterns", []).append(allow_patterns)
        if isinstance(outcome.get("raise"), Exception):
            raise outcome["raise"]
        return str(outcome["folder"])

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_download)
    outcome["raise"] = _http_error(RepositoryNotFoundError, 404)
    with pytest.raises(UnitransError, match="no model 'someone/missing' on the Hugging Face hub"):
        resolve_encoder("someone/missing")
    outcome["raise"] = _http_error(HfHubHTTPError, 500)
    with pytest.raises(UnitransError, match=r"could not download 'someone/x' \(500 Client Error\)") as err:
        resolve_encoder("someone/x")
    assert "\n" not in str(err.value)

    # A legacy repo without safetensors: the second call adds pytorch_model.bin to the patterns.
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "config.json").write_text("{}")
    (legacy / "pytorch_model.bin").write_bytes(b"x")
    outcome.update({"raise": None, "folder": legacy, "patterns": []})
    assert resolve_encoder("someone/legacy") == legacy
    assert [encoders.LEGACY_WEIGHTS in p for p in outcome["patterns"]] == [False, True]


def fake_prepared_gemma(root: Path, monkeypatch, *, build_format: int = 1) -> Path:
    """A cached embeddinggemma-300m folder as `encoder prepare` leaves it (tiny weights, hash patched)."""
    from unitrans.model import embeddinggemma

    folder = root / embeddinggemma.GEMMA_NAME
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "gemma3_text"}))
    (folder / "model.safetensors").write_bytes(b"weights")
    marker = {"build_format": build_format, "weights_sha256": "ab" * 32}
    (folder / embeddinggemma.MARKER).write_text(json.dumps(marker))
    monkeypatch.setattr(embeddinggemma, "WEIGHTS_SHA256", "ab" * 32)
    monkeypatch.setattr(embeddinggemma, "WEIGHTS_SIZE", len(b"weights"))
    return folder


def test_embeddinggemma_not_prepared_says_what_to_run(no_hub, tmp_path, capsys):
    start = time.perf_counter()
    assert main(["encoder", "info", "embeddinggemma-300m", "--cache-dir", str(tmp_path / "root")]) == 2
    err = capsys.readouterr().err.strip()
    assert "'embeddinggemma-300m' is not prepared" in err and "\n" not in err
    assert "run `unitrans encoder prepare embeddinggemma-300m` once" in err
    with pytest.raises(UnitransError, match=r"hub is unreachable .*; or run `unitrans encoder prepare"):
        resolve_encoder("google/embeddinggemma-300m", cache_dir=tmp_path / "root")
    assert time.perf_counter() - start < 10


def test_embeddinggemma_names_resolve_to_the_prepared_folder(no_hub, monkeypatch, tmp_path):
    folder = fake_prepared_gemma(tmp_path / "root", monkeypatch)
    assert resolve_encoder("embeddinggemma-300m", cache_dir=tmp_path / "root") == folder
    assert resolve_encoder("google/embeddinggemma-300m", cache_dir=tmp_path / "root") == folder  # no hub


def test_embeddinggemma_of_an_older_layout_or_wrong_size_is_not_used(no_hub, monkeypatch, tmp_path):
    from unitrans.model import embeddinggemma

    fake_prepared_gemma(tmp_path / "old", monkeypatch, build_format=0)
    with pytest.raises(UnitransError, match="is not prepared"):
        resolve_encoder("embeddinggemma-300m", cache_dir=tmp_path / "old")
    fake_prepared_gemma(tmp_path / "cut", monkeypatch)
    monkeypatch.setattr(embeddinggemma, "WEIGHTS_SIZE", 8)
    with pytest.raises(UnitransError, match="is not prepared"):
        resolve_encoder("embeddinggemma-300m", cache_dir=tmp_path / "cut")


def test_prepare_builds_embeddinggemma_and_resolves_other_names(monkeypatch, tmp_path, tiny_encoder_dir):
    seen: list[Path | None] = []
    monkeypatch.setattr(
        encoders, "build_embeddinggemma", lambda cache_dir: seen.append(cache_dir) or tmp_path
    )
    assert encoders.prepare_encoder("embeddinggemma-300m", cache_dir=tmp_path / "root") == tmp_path
    assert seen == [tmp_path / "root"]
    assert encoders.prepare_encoder(str(tiny_encoder_dir)) == tiny_encoder_dir.resolve()
    assert seen == [tmp_path / "root"]
