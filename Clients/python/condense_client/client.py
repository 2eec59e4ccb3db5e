"""Synchronous Condense client: numpy arrays out, typed exceptions per status code."""
from __future__ import annotations

import threading
from typing import Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from condense.v1 import common_pb2 as common
from condense.v1 import embedding_pb2 as emb

from ._transport import Connection

_EMBEDDING = "/condense.v1.EmbeddingService/"
_POOLING = {"mean": common.POOLING_MEAN, "last": common.POOLING_LAST, "eos": common.POOLING_EOS,
            "weighted-mean": common.POOLING_WEIGHTED_MEAN}
_PRECISION = {"float32": common.PRECISION_FLOAT32, "float16": common.PRECISION_FLOAT16,
              "int8": common.PRECISION_INT8, "binary": common.PRECISION_BINARY}
_TRUNCATION = {"truncate": common.TRUNCATION_POLICY_TRUNCATE, "reject": common.TRUNCATION_POLICY_REJECT}


class EmbeddingItemError(ValueError):
    """Some texts of a request could not be embedded; `errors` maps input index -> message."""

    def __init__(self, errors: dict):
        self.errors = errors
        first = ", ".join(f"#{i}: {m}" for i, m in list(errors.items())[:3])
        super().__init__(f"{len(errors)} text(s) failed: {first}")


class Client:
    """One TCP connection to a Condense server; calls are serialized by a lock (thread-safe)."""

    def __init__(self, address: str, token: Optional[str] = None, timeout: Optional[float] = None):
        host, _, port = address.rpartition(":")
        self._connection = Connection(host.strip("[]"), int(port), token=token)
        self._timeout = timeout
        self._lock = threading.Lock()

    def close(self) -> None:
        self._connection.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- plumbing -------------------------------------------------------------------------
    def _unary(self, method: str, request, response_type):
        with self._lock:
            payloads = list(self._connection.call(_EMBEDDING + method, [request.SerializeToString()], self._timeout))
        response = response_type()
        response.ParseFromString(payloads[0])
        return response

    # --- API ------------------------------------------------------------------------------
    def health(self) -> Tuple[str, str]:
        """("serving" | "not_serving" | "unknown", detail)."""
        response = self._unary("Health", emb.HealthRequest(), emb.HealthResponse)
        name = emb.ServingStatus.Name(response.status).removeprefix("SERVING_STATUS_").lower()
        return name, response.detail

    def model_info(self) -> emb.ModelInfo:
        return self._unary("GetModelInfo", emb.GetModelInfoRequest(), emb.ModelInfo)

    def tokenize(self, texts: Sequence[str], prompt: Optional[str] = None, max_tokens: int = 0) -> List[List[int]]:
        request = emb.TokenizeRequest(texts=list(texts), options=self.options(prompt=prompt, max_tokens=max_tokens))
        response = self._unary("Tokenize", request, emb.TokenizeResponse)
        return [list(r.token_ids) for r in response.results]

    def embed(self, texts: Sequence[str], prompt: Optional[str] = None, pooling: Optional[str] = None,
              normalize: Optional[bool] = None, dimensions: int = 0, precision: str = "float32",
              max_tokens: int = 0, truncation: str = "truncate", exclude_prompt: bool = False,
              adapter: Optional[str] = None) -> np.ndarray:
        """Embeds `texts`; returns float32 array (len(texts), dim). Raises EmbeddingItemError if any text failed."""
        options = self.options(prompt, pooling, normalize, dimensions, precision, max_tokens, truncation,
                               exclude_prompt, adapter)
        response = self._unary("Embed", emb.EmbedRequest(texts=list(texts), options=options), emb.EmbedResponse)
        return _to_matrix(response.results, len(texts))

    def embed_stream(self, texts: Iterable[str], chunk_size: int = 64, **embed_options) -> Iterator[Tuple[int, np.ndarray]]:
        """Bulk embedding: yields (input index, vector) as batches finish on the server (any order)."""
        options = self.options(**embed_options)

        def requests():
            chunk, first = [], 0
            for text in texts:
                chunk.append(text)
                if len(chunk) == chunk_size:
                    yield emb.EmbedStreamRequest(options=options if first == 0 else None, first_index=first,
                                                 texts=chunk).SerializeToString()
                    first += len(chunk)
                    chunk = []
            if chunk or first == 0:
                yield emb.EmbedStreamRequest(options=options if first == 0 else None, first_index=first,
                                             texts=chunk).SerializeToString()

        with self._lock:
            for payload in self._connection.call(_EMBEDDING + "EmbedStream", requests(), self._timeout):
                message = emb.EmbedStreamResponse()
                message.ParseFromString(payload)
                if message.WhichOneof("kind") != "batch":
                    continue
                for result in message.batch.results:
                    if result.HasField("error"):
                        raise EmbeddingItemError({result.index: result.error.message})
                    yield result.index, _vector(result.vector)

    @staticmethod
    def options(prompt: Optional[str] = None, pooling: Optional[str] = None, normalize: Optional[bool] = None,
                dimensions: int = 0, precision: str = "float32", max_tokens: int = 0, truncation: str = "truncate",
                exclude_prompt: bool = False, adapter: Optional[str] = None) -> common.EmbedOptions:
        options = common.EmbedOptions(dimensions=dimensions, max_tokens=max_tokens, exclude_prompt=exclude_prompt,
                                      precision=_PRECISION[precision], truncation=_TRUNCATION[truncation],
                                      adapter_id=adapter or "")
        if prompt is not None:
            if "{text}" in prompt:
                options.prompt_template = prompt
            else:
                options.prompt_name = prompt
        if pooling is not None:
            options.pooling = _POOLING[pooling]
        if normalize is not None:
            options.normalize = normalize
        return options


def _vector(v: common.Vector) -> np.ndarray:
    if v.precision in (common.PRECISION_FLOAT32, common.PRECISION_UNSPECIFIED):
        return np.asarray(v.values, dtype=np.float32)
    if v.precision == common.PRECISION_FLOAT16:
        return np.frombuffer(v.data, dtype="<f2").astype(np.float32)
    if v.precision == common.PRECISION_INT8:
        return np.frombuffer(v.data, dtype=np.int8).astype(np.float32) * v.scale
    bits = np.unpackbits(np.frombuffer(v.data, dtype=np.uint8))[: v.dimensions]
    return bits.astype(np.float32)


def _to_matrix(results, count: int) -> np.ndarray:
    errors = {r.index: r.error.message for r in results if r.HasField("error")}
    if errors:
        raise EmbeddingItemError(errors)
    vectors = [None] * count
    for r in results:
        vectors[r.index] = _vector(r.vector)
    return np.stack(vectors) if vectors else np.zeros((0, 0), dtype=np.float32)
