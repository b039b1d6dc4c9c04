"""Tier 2's encoder and head: the ONNX encoder against sentence-transformers' own vectors,
ONNX against torch, and the head's export."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from distillery.errors import ModelError
from distillery.settings import default_settings
from models.embed.encoder import TextEncoder
from models.embed.export import check_parity, ensure_encoder
from models.embed.head import Head, check_head_parity, export_head, train_head

REFERENCE = Path(__file__).parent / "data" / "minilm_reference.json"


@pytest.fixture(scope="module")
def encoder() -> TextEncoder:
    return TextEncoder.load(ensure_encoder(default_settings().cache_dir), precision="float32")


def test_encoder_matches_sentence_transformers(encoder: TextEncoder) -> None:
    ref = json.loads(REFERENCE.read_text(encoding="utf-8"))
    got = encoder.encode(ref["sentences"], batch_size=3)
    want = np.asarray(ref["embeddings"], dtype=np.float32)
    assert got.shape == want.shape == (len(ref["sentences"]), 384)
    assert np.abs(got - want).max() < 1e-4
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_encode_keeps_order_whatever_the_batching(encoder: TextEncoder) -> None:
    texts = ["short", "a much longer sentence about a frozen bank account", "", "mid length"]
    one = encoder.encode(texts, batch_size=1)
    many = encoder.encode(texts, batch_size=3)
    assert np.abs(one - many).max() < 1e-5
    assert not np.allclose(one[0], one[1])


def test_onnx_matches_torch_and_refuses_a_different_model(encoder: TextEncoder) -> None:
    from models.embed.bert import load_minilm
    from models.embed.export import ENCODER_FILE, TOKENIZER_FILE
    from models.embed.weights import verified

    directory = ensure_encoder(default_settings().cache_dir)
    data = (directory / ENCODER_FILE).read_bytes()
    tokenizer = (directory / TOKENIZER_FILE).read_bytes()
    model = load_minilm(str(verified().weights))
    assert check_parity(data, tokenizer, model) < 1e-4
    with __import__("torch").no_grad():
        model.layers[-1].out_norm.bias.add_(0.05)  # a different network: parity must fail
    with pytest.raises(ModelError, match="differs from torch"):
        check_parity(data, tokenizer, model)


def test_int8_encoder_stays_close_to_float_and_is_refused_when_it_drifts(
        encoder: TextEncoder, tmp_path: Path) -> None:
    from models.embed.export import (
        ENCODER_FILE,
        INT8_FILE,
        MANIFEST_FILE,
        TOKENIZER_FILE,
        encoder_dir,
        int8_cosine,
    )

    directory = ensure_encoder(default_settings().cache_dir)
    manifest = json.loads((directory / MANIFEST_FILE).read_text(encoding="utf-8"))
    assert manifest["int8_min_cosine"] >= 0.95
    int8 = TextEncoder.load(directory)  # the default precision
    texts = ["my card was stolen", "cancel my order 4411 please", "what time is it in Oslo"]
    cosine = (int8.encode(texts) * encoder.encode(texts)).sum(axis=1)
    assert cosine.min() > 0.95 and not np.allclose(cosine, 1.0, atol=1e-6)
    data = (directory / ENCODER_FILE).read_bytes()
    tokenizer = (directory / TOKENIZER_FILE).read_bytes()
    # a "quantised" file that is another model: refused by the cosine check
    with pytest.raises(ModelError, match="cosine"):
        int8_cosine(data, _other_model(data), tokenizer)
    # a cache exported before int8 existed gets its int8 file on first use
    old = encoder_dir(tmp_path)
    old.mkdir(parents=True)
    for name in (ENCODER_FILE, TOKENIZER_FILE):
        (old / name).symlink_to(directory / name)
    stripped = {k: v for k, v in manifest.items() if not k.startswith("int8")}
    (old / MANIFEST_FILE).write_text(json.dumps(stripped), encoding="utf-8")
    assert ensure_encoder(tmp_path) == old and (old / INT8_FILE).is_file()
    assert TextEncoder.load(old).encode(texts).shape == (3, 384)
    (old / INT8_FILE).write_bytes((old / INT8_FILE).read_bytes()[:-8] + b"tampered")
    with pytest.raises(ModelError, match="does not match"):
        TextEncoder.load(old)


def _other_model(data: bytes) -> bytes:
    """The float graph with the rows of every weight matrix shuffled: same shapes, another
    model."""
    import onnx
    from onnx import numpy_helper

    rng = np.random.default_rng(0)
    model = onnx.load_from_string(data)
    for init in model.graph.initializer:
        values = numpy_helper.to_array(init)
        if values.ndim == 2 and values.dtype == np.float32:
            init.CopyFrom(numpy_helper.from_array(rng.permutation(values), init.name))
    return bytes(model.SerializeToString())


def test_head_trains_exports_and_matches_numpy() -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 16)).astype(np.float32)
    y = rng.integers(0, 3, 300)
    x = centres[y] + 0.3 * rng.normal(size=(300, 16)).astype(np.float32)
    head = train_head(x, y, 3)
    assert (head.logits(x).argmax(axis=1) == y).mean() > 0.95
    data = export_head(head, 1.7)
    assert check_head_parity(data, head, 1.7, x[:50]) < 1e-5
    other = Head(head.weight * 2, head.bias)
    with pytest.raises(ModelError):
        check_head_parity(data, other, 1.7, x[:50])
