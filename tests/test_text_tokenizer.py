"""Text tokens: a byte-level BPE trained on captions, fixed-length rows, exact padding and truncation."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer, models, pre_tokenizers

from motionlab.tokenizers.captioners import TemplateCaptioner
from motionlab.tokenizers.text import TextTokenizer, train_bpe

ACTIONS = [
    "baseball_pitch",
    "bench_press",
    "bowl",
    "jump_rope",
    "pullup",
    "squat",
    "strum_guitar",
    "tennis_serve",
]
VIEWS = ["front", "back", "left", "right"]


def captions(n_keys: int = 12) -> list[str]:
    combos = list(itertools.product(ACTIONS, VIEWS, range(n_keys)))
    return TemplateCaptioner()(
        [a for a, _, _ in combos], [v for _, v, _ in combos], [f"{a}{v}{k}" for a, v, k in combos]
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[TextTokenizer, Path, list[str]]:
    texts = captions()
    out = tmp_path_factory.mktemp("text") / "tokenizer.json"
    return train_bpe(texts, 400, out), out, texts


def test_round_trip_and_vocabulary(trained) -> None:
    tok, out, texts = trained
    assert len(texts) == 384 and out.is_file()
    assert 260 < tok.vocab_size <= 400
    assert tok.pad_id == 0
    ids = tok.encode(texts, max_len=32)
    assert ids.shape == (384, 32) and ids.dtype == np.int32
    assert ids.min() >= 0 and ids.max() < tok.vocab_size
    for text, row in zip(texts, ids, strict=True):
        assert tok.decode(row) == " ".join(text.split())
    # merges were learnt: a caption is far fewer tokens than bytes
    lengths = (ids != tok.pad_id).sum(axis=1)
    assert lengths.max() < 32 and lengths.mean() < 0.5 * np.mean([len(t) for t in texts])
    # unseen characters still encode (byte level) and decode back
    assert tok.decode(tok.encode(["a person doing yoga — café"], 40)[0]) == "a person doing yoga — café"


def test_padding_and_truncation_are_exact(trained) -> None:
    tok, _, _ = trained
    bos, eos, pad = tok.bos_id, tok.eos_id, tok.pad_id
    assert len({bos, eos, pad}) == 3
    body = tok.tokenizer.encode("a person doing squats", add_special_tokens=False).ids
    row = tok.encode(["a person doing squats"], max_len=len(body) + 5)[0]
    assert row.tolist() == [bos, *body, eos, pad, pad, pad]
    cut = tok.encode(["a person doing squats"], max_len=4)[0]
    assert cut.tolist() == [bos, *body[:2], eos]
    exact = tok.encode(["a person doing squats"], max_len=len(body) + 2)[0]
    assert exact.tolist() == [bos, *body, eos]
    empty = tok.encode([""], max_len=4)[0]
    assert empty.tolist() == [bos, eos, pad, pad]
    assert tok.decode(empty) == ""
    # decoding stops at EOS: whatever a sampler put after it is not text
    assert tok.decode([bos, *body, eos, *body]) == "a person doing squats"
    with pytest.raises(ValueError, match="max_len"):
        tok.encode(["x"], max_len=1)


def test_saved_file_and_folder_reload_identically(trained, tmp_path: Path) -> None:
    tok, out, texts = trained
    again = TextTokenizer.load(out)
    assert np.array_equal(again.encode(texts, 24), tok.encode(texts, 24))
    assert (again.vocab_size, again.pad_id, again.bos_id, again.eos_id) == (
        tok.vocab_size,
        tok.pad_id,
        tok.bos_id,
        tok.eos_id,
    )
    folder = tmp_path / "folder"
    folder.mkdir()
    assert tok.save(folder) == folder / "tokenizer.json"
    assert np.array_equal(TextTokenizer.load(folder).encode(texts[:5], 24), tok.encode(texts[:5], 24))
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "missing" / "tokenizer.json")):
        TextTokenizer.load(tmp_path / "missing" / "tokenizer.json")


def test_other_local_tokenizers_use_their_own_specials(tmp_path: Path) -> None:
    # a WordPiece (BERT-style) tokenizer.json in a folder that declares its specials the Hugging Face way
    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a", "person", "runs"])}
    wp = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    wp.pre_tokenizer = pre_tokenizers.Whitespace()
    wp.add_special_tokens(["[PAD]", "[UNK]", "[CLS]", "[SEP]"])
    wp.save(str(tmp_path / "tokenizer.json"))
    (tmp_path / "special_tokens_map.json").write_text(
        json.dumps({"pad_token": "[PAD]", "bos_token": {"content": "[CLS]"}, "eos_token": "[SEP]"})
    )
    tok = TextTokenizer.load(tmp_path)
    assert (tok.pad_id, tok.bos_id, tok.eos_id, tok.vocab_size) == (0, 2, 3, 7)
    row = tok.encode(["a person runs"], max_len=7)[0]
    assert row.tolist() == [2, 4, 5, 6, 3, 0, 0]
    assert tok.decode(row) == "a person runs"


def test_bad_requests_name_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="260"):
        train_bpe(["a person"], 100, tmp_path / "t.json")
    (tmp_path / "broken.json").write_text("{}")
    with pytest.raises(ValueError, match="broken.json"):
        TextTokenizer.load(tmp_path / "broken.json")
