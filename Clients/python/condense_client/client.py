"""Synchronous Condense client: numpy arrays out, typed exceptions per status code."""
from __future__ import annotations

import os
import threading
import time
from typing import Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from condense.v1 import common_pb2 as common
from condense.v1 import embedding_pb2 as emb
from condense.v1 import envelope_pb2 as env
from condense.v1 import finetune_pb2 as ft

from ._options import embed_options
from ._transport import Connection, tls_context
from .errors import Unavailable, error_for_status
from .finetune import Adapter, FineTuneJob, JobEvent, Pair, hyperparameters, pair_chunks, state_value, \
    write_file_chunks
from .progress import Progress

_EMBEDDING = "/condense.v1.EmbeddingService/"
_FINETUNE = "/condense.v1.FineTuneService/"
_STREAM_CHUNK = 64       # texts per EmbedStream request message


class EmbeddingItemError(ValueError):
    """Some texts of a request could not be embedded; `errors` maps input index -> message."""

    def __init__(self, errors: dict):
        self.errors = errors
        first = ", ".join(f"#{i}: {m}" for i, m in list(errors.items())[:3])
        super().__init__(f"{len(errors)} text(s) failed: {first}")


class Client:
    """One TCP connection to a Condense server; calls are serialized by a lock (thread-safe).

    A lost connection is replaced by a new one at the next call. Unary calls (all safe to repeat) are retried
    once on a new connection when the old one turns out to be lost; streaming calls raise Unavailable, except
    `watch_job`, which runs on a connection of its own and resumes by itself.

    `tls=True` speaks TLS to a server started with `--tls-cert`, verifying its certificate against the system's
    trust roots, or against `ca_file` (PEM: a private CA or the server's self-signed certificate); `server_name`
    is the name on the certificate when it is not the address's host. `ca_file` or `server_name` imply `tls`.
    """

    def __init__(self, address: str, token: Optional[str] = None, timeout: Optional[float] = None,
                 tls: bool = False, ca_file: Optional[str] = None, server_name: Optional[str] = None):
        host, _, port = address.rpartition(":")
        self._host, self._port, self._token = host.strip("[]"), int(port), token
        self._tls = tls_context(ca_file) if tls or ca_file or server_name else None
        self._server_name = server_name
        self._connection = self._connect()
        self._timeout = timeout
        self._lock = threading.Lock()

    def close(self) -> None:
        self._connection.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- plumbing -------------------------------------------------------------------------
    def _connect(self) -> Connection:
        return Connection(self._host, self._port, token=self._token, tls=self._tls, server_name=self._server_name)

    def _call(self, method: str, requests: Iterable[bytes], timeout: Optional[float]) -> Iterator[bytes]:
        """One call on the shared connection, holding the lock until its last response was read."""
        with self._lock:
            if self._connection.broken:
                self._connection.close()
                self._connection = self._connect()
            yield from self._connection.call(method, requests, timeout)

    def _unary(self, method: str, request, response_type):
        try:
            payloads = list(self._call(method, [request.SerializeToString()], self._timeout))
        except Unavailable:
            if not self._connection.broken:
                raise  # the server answered UNAVAILABLE: not a connection problem
            payloads = list(self._call(method, [request.SerializeToString()], self._timeout))
        response = response_type()
        response.ParseFromString(payloads[0])
        return response

    # --- embeddings -----------------------------------------------------------------------
    def health(self) -> Tuple[str, str]:
        """("serving" | "not_serving" | "unknown", detail)."""
        response = self._unary(_EMBEDDING + "Health", emb.HealthRequest(), emb.HealthResponse)
        name = emb.ServingStatus.Name(response.status).removeprefix("SERVING_STATUS_").lower()
        return name, response.detail

    def model_info(self) -> emb.ModelInfo:
        return self._unary(_EMBEDDING + "GetModelInfo", emb.GetModelInfoRequest(), emb.ModelInfo)

    def tokenize(self, texts: Sequence[str], prompt: Optional[str] = None, max_tokens: int = 0) -> List[List[int]]:
        request = emb.TokenizeRequest(texts=list(texts), options=self.options(prompt=prompt, max_tokens=max_tokens))
        response = self._unary(_EMBEDDING + "Tokenize", request, emb.TokenizeResponse)
        return [list(r.token_ids) for r in response.results]

    def embed(self, texts: Sequence[str], prompt: Optional[str] = None, pooling: Optional[str] = None,
              normalize: Optional[bool] = None, dimensions: int = 0, precision: str = "float32",
              max_tokens: int = 0, truncation: str = "truncate", exclude_prompt: bool = False,
              adapter: Optional[str] = None) -> np.ndarray:
        """Embeds `texts`; returns float32 array (len(texts), dim). Raises EmbeddingItemError if any text failed."""
        options = self.options(prompt, pooling, normalize, dimensions, precision, max_tokens, truncation,
                               exclude_prompt, adapter)
        response = self._unary(_EMBEDDING + "Embed", emb.EmbedRequest(texts=list(texts), options=options),
                               emb.EmbedResponse)
        return _to_matrix(response.results, len(texts))

    def embed_stream(self, texts: Iterable[str], chunk_size: int = _STREAM_CHUNK, progress: bool = False,
                     **embed_options) -> Iterator[Tuple[int, np.ndarray]]:
        """Bulk embedding: yields (input index, vector) as batches finish on the server (any order). Raises
        EmbeddingItemError at the first text that failed. `progress=True` shows a bar (tqdm if installed, else
        lines on stderr)."""
        total = len(texts) if hasattr(texts, "__len__") else None
        with Progress(total, enabled=progress) as bar:
            for result in self._stream_results(texts, chunk_size, self.options(**embed_options)):
                if result.HasField("error"):
                    raise EmbeddingItemError({result.index: result.error.message})
                bar.update(1)
                yield result.index, _vector(result.vector)

    def encode(self, sentences: Union[str, Sequence[str]], batch_size: int = _STREAM_CHUNK,
               show_progress_bar: bool = False, normalize_embeddings: Optional[bool] = None,
               convert_to_numpy: bool = True, prompt: Optional[str] = None, pooling: Optional[str] = None,
               adapter: Optional[str] = None, on_error: str = "raise", **embed_options):
        """Embeds like sentence-transformers' `SentenceTransformer.encode`: an (n, d) float32 array in input
        order, a 1-D vector for a single string, or a list of 1-D arrays with `convert_to_numpy=False`.

        Up to `batch_size` sentences go in one Embed call; more are streamed (EmbedStream) in messages of
        `batch_size`. `normalize_embeddings=None` keeps the server's default (normalized). `prompt` is a prompt
        name or a template with `{text}`; further options (dimensions, precision, max_tokens, truncation,
        exclude_prompt) are as in `embed`.

        `on_error="raise"` raises EmbeddingItemError naming every failed index once all sentences were
        processed; `on_error="none"` returns None for those rows instead (a NaN row in numpy output).
        """
        if on_error not in ("raise", "none"):
            raise ValueError(f"on_error must be 'raise' or 'none', not {on_error!r}")
        single = isinstance(sentences, str)
        texts = [sentences] if single else list(sentences)
        options = self.options(prompt=prompt, pooling=pooling, normalize=normalize_embeddings, adapter=adapter,
                               **embed_options)
        rows: List[Optional[np.ndarray]] = [None] * len(texts)
        errors = {}
        with Progress(len(texts), enabled=show_progress_bar) as bar:
            if not texts:
                results = []
            elif len(texts) <= batch_size:
                response = self._unary(_EMBEDDING + "Embed", emb.EmbedRequest(texts=texts, options=options),
                                       emb.EmbedResponse)
                results = response.results
            else:
                results = self._stream_results(texts, batch_size, options)
            for result in results:
                if result.HasField("error"):
                    errors[result.index] = result.error.message
                else:
                    rows[result.index] = _vector(result.vector)
                bar.update(1)
        if errors and on_error == "raise":
            raise EmbeddingItemError(dict(sorted(errors.items())))
        if not convert_to_numpy:
            return rows[0] if single else rows
        width = next((len(row) for row in rows if row is not None), 0)
        matrix = np.full((len(texts), width), np.nan, dtype=np.float32)
        for index, row in enumerate(rows):
            if row is not None:
                matrix[index] = row
        return matrix[0] if single else matrix

    def _stream_results(self, texts: Iterable[str], chunk_size: int,
                        options: common.EmbedOptions) -> Iterator[common.EmbeddingResult]:
        """EmbedStream: the input in messages of `chunk_size` texts; yields each EmbeddingResult as it comes."""
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

        for payload in self._call(_EMBEDDING + "EmbedStream", requests(), self._timeout):
            message = emb.EmbedStreamResponse()
            message.ParseFromString(payload)
            if message.WhichOneof("kind") == "batch":
                yield from message.batch.results

    @staticmethod
    def options(prompt: Optional[str] = None, pooling: Optional[str] = None, normalize: Optional[bool] = None,
                dimensions: int = 0, precision: str = "float32", max_tokens: int = 0, truncation: str = "truncate",
                exclude_prompt: bool = False, adapter: Optional[str] = None) -> common.EmbedOptions:
        return embed_options(prompt, pooling, normalize, dimensions, precision, max_tokens, truncation,
                             exclude_prompt, adapter)

    # --- fine-tuning ----------------------------------------------------------------------
    def create_fine_tune_job(self, pairs: Optional[Iterable[Pair]] = None, pairs_path: Optional[str] = None, *,
                             name: Optional[str] = None, adapter_id: Optional[str] = None,
                             base_model: Optional[str] = None, **hyperparameter_values) -> FineTuneJob:
        """Submits a contrastive LoRA fine-tuning job and returns it (normally "queued").

        `pairs`: (text, positive) tuples or dicts with "text" and "positive" (or "text_aug"), uploaded with
        the job (see `read_pairs` for local CSV / JSONL files). `pairs_path`: a CSV file on the server instead.
        Hyperparameters are keyword arguments named as in finetune.proto (steps or epochs, batch_size,
        learning_rate, warmup_steps, lora_rank, lora_alpha, lora_dropout, target_modules, temperature, margin,
        max_tokens, prompt, pooling, normalize, seed, checkpoint_every, micro_batch_size). Invalid values raise
        InvalidArgument and create no job; a taken `adapter_id` raises AlreadyExists.
        """
        if (pairs is None) == (pairs_path is None):
            raise ValueError("give either pairs (uploaded) or pairs_path (a file on the server)")
        spec = ft.FineTuneJobSpec(name=name or "", base_model=base_model or "", pairs_path=pairs_path or "",
                                  adapter_id=adapter_id or "", hyperparameters=hyperparameters(**hyperparameter_values))

        def requests():
            yield ft.CreateFineTuneJobRequest(spec=spec).SerializeToString()
            for chunk in pair_chunks(pairs or ()):
                yield ft.CreateFineTuneJobRequest(pairs=chunk).SerializeToString()

        payloads = list(self._call(_FINETUNE + "CreateFineTuneJob", requests(), self._timeout))
        job = ft.FineTuneJob()
        job.ParseFromString(payloads[0])
        return FineTuneJob.from_proto(job)

    def get_job(self, job_id: str) -> FineTuneJob:
        """The job's current state; NotFound for an unknown id."""
        return FineTuneJob.from_proto(self._unary(_FINETUNE + "GetJob", ft.GetJobRequest(job_id=job_id),
                                                  ft.FineTuneJob))

    def list_jobs(self, states: Optional[Sequence[str]] = None, limit: int = 0) -> List[FineTuneJob]:
        """Jobs, newest first; `states` (e.g. ["queued", "running"]) filters, `limit` 0 = all."""
        request = ft.ListJobsRequest(states=[state_value(s) for s in states or ()], limit=limit)
        response = self._unary(_FINETUNE + "ListJobs", request, ft.ListJobsResponse)
        return [FineTuneJob.from_proto(job) for job in response.jobs]

    def cancel_job(self, job_id: str, reason: str = "") -> FineTuneJob:
        """Cancels a job that has not ended; a finished job is returned unchanged."""
        return FineTuneJob.from_proto(self._unary(_FINETUNE + "CancelJob",
                                                  ft.CancelJobRequest(job_id=job_id, reason=reason), ft.FineTuneJob))

    def watch_job(self, job_id: str, after_sequence: int = 0, timeout: Optional[float] = None,
                  max_retries: int = 5, retry_delay: float = 0.5) -> Iterator[JobEvent]:
        """Yields the job's events with sequence > `after_sequence` (stored ones, then live ones) and ends after
        the terminal event (finished, failed or cancelled).

        Runs on a connection of its own, so other calls of this client (e.g. `cancel_job` inside the loop) do
        not wait for it. When the connection is lost (Unavailable) it reconnects and resumes after the last
        event it yielded, so no event is lost or repeated; after `max_retries` failed attempts in a row (waits
        of `retry_delay`, doubling up to 10 s) the Unavailable error is raised. `timeout` bounds the whole
        watch (DeadlineExceeded); NotFound for an unknown job.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        last, failures = after_sequence, 0
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise error_for_status(env.DEADLINE_EXCEEDED, f"watching {job_id} took longer than {timeout} s")
            connection = events = None
            try:
                connection = self._connect()
                request = ft.WatchJobRequest(job_id=job_id, after_sequence=last).SerializeToString()
                events = connection.call(_FINETUNE + "WatchJob", [request], remaining)
                for payload in events:
                    message = ft.JobEvent()
                    message.ParseFromString(payload)
                    last, failures = message.sequence, 0
                    yield JobEvent.from_proto(message)
                return
            except Unavailable:
                failures += 1
                if failures > max_retries:
                    raise
                pause = min(retry_delay * 2 ** (failures - 1), 10.0)
                time.sleep(pause if deadline is None else max(0.0, min(pause, deadline - time.monotonic())))
            finally:
                if events is not None:
                    events.close()  # cancels the call on the server if the caller stopped early
                if connection is not None:
                    connection.close()

    def list_adapters(self) -> List[Adapter]:
        """Adapters the server has, newest first."""
        response = self._unary(_FINETUNE + "ListAdapters", ft.ListAdaptersRequest(), ft.ListAdaptersResponse)
        return [Adapter.from_proto(a) for a in response.adapters]

    def get_adapter(self, adapter_id: str) -> Adapter:
        """One adapter's metadata; NotFound for an unknown id."""
        return Adapter.from_proto(self._unary(_FINETUNE + "GetAdapter", ft.GetAdapterRequest(adapter_id=adapter_id),
                                              ft.Adapter))

    def download_adapter(self, adapter_id: str, directory: Union[str, os.PathLike],
                         chunk_size: int = 0) -> List[str]:
        """Writes the adapter's PEFT directory (adapter_config.json, adapter_model.safetensors,
        condense_recipe.json) into `directory`; returns the files written. NotFound for an unknown id,
        DataLoss for a damaged transfer."""
        request = ft.DownloadAdapterRequest(adapter_id=adapter_id, chunk_size=chunk_size).SerializeToString()

        def chunks():
            for payload in self._call(_FINETUNE + "DownloadAdapter", [request], self._timeout):
                chunk = common.FileChunk()
                chunk.ParseFromString(payload)
                yield chunk

        return write_file_chunks(chunks(), directory)


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
