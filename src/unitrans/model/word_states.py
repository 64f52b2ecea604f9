"""Per-word hidden states of a saved tagger: what `unitrans.train.denoise` finds neighbours in.

As CoLaDa (`get_word_repr`, `knn_lid=3`): the mean of the outputs of the encoder's last three layers
(all of them when it has fewer; never the embeddings), the family's final step (a norm for Gemma, nothing
for BERTs) applied, at each word's first subword (the state the tagger's head reads). One forward pass,
windows as in prediction (every word from the window that owns it), in fp32 so the same input gives the
same states.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from unitrans.data import Sentence
from unitrans.model import runtime
from unitrans.model.architectures import family_of
from unitrans.model.predict import check_batch_size, checkpoint_max_length
from unitrans.model.tagger import embed, load_tagger
from unitrans.model.windows import make_windows
from unitrans.train.batching import flat_positions, pad_ids, sorted_batches

LAST_LAYERS = 3
"""CoLaDa's `--knn_lid 3`: states averaged over the encoder's last three layers."""


@torch.no_grad()
def word_states(
    model_dir: Path,
    sentences: Sequence[Sentence],
    *,
    last_layers: int = LAST_LAYERS,
    batch_size: int = 64,
    max_tokens: int = 8192,
    progress: bool = True,
    device: str | None = None,
) -> np.ndarray:
    """(total words, hidden) float32, sentences concatenated in order."""
    check_batch_size(batch_size)
    dev = runtime.pick_device(device)
    model, tokenizer = load_tagger(Path(model_dir))
    max_length = checkpoint_max_length(Path(model_dir), model)
    model.to(dev, dtype=torch.float32).eval()
    base = model.base_model
    family = family_of(base)
    n_layers = len(family.layers(base))
    first = max(0, n_layers - last_layers)
    offsets = np.concatenate([[0], np.cumsum([len(s) for s in sentences])]).astype(np.int64)
    out = np.zeros((int(offsets[-1]), model.config.hidden_size), dtype=np.float32)
    windows = make_windows(tokenizer, sentences, max_length)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    bar = tqdm(total=int(offsets[-1]), desc="word states", unit="word", disable=not progress)
    for batch in sorted_batches([len(w) for w in windows], batch_size, max_tokens):
        rows = [windows[i] for i in batch]
        ids, mask = pad_ids([w.input_ids for w in rows], pad_id)
        ids, mask = ids.to(dev), mask.to(dev)
        where = flat_positions([w.positions for w in rows], ids.shape[1]).to(dev)
        hidden = embed(model, ids, mask)
        context = family.context(base, hidden, mask)
        total = torch.zeros(len(where), hidden.shape[-1], device=dev)
        for i in range(n_layers):
            hidden = family.layer(base, i, hidden, context)
            if i >= first:
                total += hidden.reshape(-1, hidden.shape[-1]).index_select(0, where).float()
        states = family.final(base, total / (n_layers - first)).float().cpu().numpy()
        start = 0
        for w in rows:
            n = len(w.word_ids)
            out[offsets[w.sentence] + w.word_ids] = states[start : start + n]
            start += n
        bar.update(len(where))
    bar.close()
    return out
