from transformers import AutoModel, AutoTokenizer


def test_tiny_encoder_loads_and_maps_words(tiny_encoder_dir):
    tok = AutoTokenizer.from_pretrained(tiny_encoder_dir)
    model = AutoModel.from_pretrained(tiny_encoder_dir)
    enc = tok(["John", "visited", "Madrid", "zzz"], is_split_into_words=True, return_tensors="pt")
    assert enc.word_ids() == [None, 0, 1, 2, 3, None]
    out = model(**enc).last_hidden_state
    assert out.shape == (1, 6, 32)
