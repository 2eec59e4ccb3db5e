"""Fine-tuning values (jobs, events, adapters), hyperparameters, and pair files (see Protos/services.md)."""
from __future__ import annotations

import csv
import itertools
import json
import os
from dataclasses import dataclass, field
from typing import Dict, Iterable, Iterator, List, Tuple, Union

from condense.v1 import common_pb2 as common
from condense.v1 import envelope_pb2 as env
from condense.v1 import finetune_pb2 as ft

from ._options import POOLING, POOLING_NAMES, choice, set_prompt
from .errors import error_for_status

TERMINAL_STATES = ("succeeded", "failed", "cancelled")
TERMINAL_EVENTS = ("finished", "failed", "cancelled")

Pair = Union[Tuple[str, str], List[str], Dict[str, str]]


def state_name(state: int) -> str:
    """The lowercase state name: "queued" for JOB_STATE_QUEUED, and so on."""
    return ft.JobState.Name(state).removeprefix("JOB_STATE_").lower()


def state_value(name: str) -> int:
    return choice({state_name(v): v for v in ft.JobState.values() if v}, name, "job state")


@dataclass(frozen=True)
class FineTuneJob:
    """A fine-tuning job and its progress (FineTuneJob in finetune.proto)."""
    job_id: str
    state: str               # validating | queued | running | succeeded | failed | cancelled
    name: str
    pair_count: int
    step: int
    total_steps: int
    last_loss: float
    adapter_id: str          # set once succeeded
    error: str               # set once failed
    worker_id: str
    created_unix_ms: int
    started_unix_ms: int
    finished_unix_ms: int
    last_sequence: int       # cursor for watch_job
    spec: ft.FineTuneJobSpec = field(repr=False)

    @property
    def done(self) -> bool:
        return self.state in TERMINAL_STATES

    @classmethod
    def from_proto(cls, job: ft.FineTuneJob) -> "FineTuneJob":
        return cls(job.job_id, state_name(job.state), job.spec.name, job.pair_count, job.step, job.total_steps,
                   job.last_loss, job.adapter_id, job.error, job.worker_id, job.created_unix_ms,
                   job.started_unix_ms, job.finished_unix_ms, job.last_sequence, job.spec)


@dataclass(frozen=True)
class JobEvent:
    """One entry of a job's event log. `details` holds the fields of the kind's message, e.g. for "step":
    step, total_steps, loss, learning_rate, pairs_per_second, eta_seconds."""
    sequence: int
    job_id: str
    unix_ms: int
    kind: str                # queued | started | step | checkpoint | finished | failed | cancelled
    details: dict

    @property
    def terminal(self) -> bool:
        return self.kind in TERMINAL_EVENTS

    @classmethod
    def from_proto(cls, event: ft.JobEvent) -> "JobEvent":
        kind = event.WhichOneof("kind") or ""
        details = {}
        if kind:
            message = getattr(event, kind)
            details = {f.name: getattr(message, f.name) for f in message.DESCRIPTOR.fields}
        return cls(event.sequence, event.job_id, event.unix_ms, kind, details)


@dataclass(frozen=True)
class Adapter:
    """A trained LoRA adapter and the recipe (pooling, prompt, normalize) to embed with it."""
    adapter_id: str
    base_model: str
    job_id: str
    lora_rank: int
    lora_alpha: float
    target_modules: List[str]
    pooling: str
    prompt_template: str
    normalize: bool
    created_unix_ms: int
    size_bytes: int
    files: List[str]
    loaded: bool

    @classmethod
    def from_proto(cls, a: ft.Adapter) -> "Adapter":
        return cls(a.adapter_id, a.base_model, a.job_id, a.lora_rank, a.lora_alpha, list(a.target_modules),
                   POOLING_NAMES.get(a.pooling, ""), a.prompt_template, a.normalize, a.created_unix_ms,
                   a.size_bytes, list(a.files), a.loaded)


HYPERPARAMETERS = ("steps", "epochs", "batch_size", "micro_batch_size", "learning_rate", "warmup_steps", "lora_rank",
                   "lora_alpha", "lora_dropout", "target_modules", "temperature", "margin", "max_tokens", "prompt",
                   "pooling", "normalize", "seed", "checkpoint_every")


def hyperparameters(**values) -> ft.Hyperparameters:
    """Hyperparameters from keyword arguments named as in finetune.proto; None (or leaving one out) means the
    server default. `prompt` is a prompt name, or a template when it contains `{text}`; `pooling` is "mean",
    "last", "eos" or "weighted-mean". Range checks are the server's (InvalidArgument)."""
    unknown = sorted(set(values) - set(HYPERPARAMETERS))
    if unknown:
        raise TypeError(f"unknown hyperparameter(s) {', '.join(unknown)}; known: {', '.join(HYPERPARAMETERS)}")
    if values.get("steps") is not None and values.get("epochs") is not None:
        raise ValueError("give steps or epochs, not both")
    message = ft.Hyperparameters()
    for name, value in values.items():
        if value is None:
            continue
        if name == "prompt":
            set_prompt(message, value)
        elif name == "pooling":
            message.pooling = choice(POOLING, value, "pooling")
        elif name == "target_modules":
            message.target_modules.extend([value] if isinstance(value, str) else value)
        else:
            setattr(message, name, value)  # oneof members (steps, lora_dropout, normalize, seed) get presence
    return message


def read_pairs(path: Union[str, os.PathLike]) -> Iterator[Tuple[str, str]]:
    """Training pairs from a local file, read as `condense finetune` reads them: `.csv` with a header naming
    `text` and `text_aug` (or `positive`) columns, or two columns without a header; `.jsonl` objects with
    `text` and `text_aug` (or `positive`). Rows with an empty side are skipped."""
    path = os.fspath(path)
    extension = os.path.splitext(path)[1].lower()
    if extension not in (".csv", ".jsonl"):
        raise ValueError(f"{path}: unsupported pairs format (use .csv or .jsonl)")
    with open(path, newline="", encoding="utf-8-sig") as file:
        rows = _csv_pairs(file, path) if extension == ".csv" else _jsonl_pairs(file, path)
        for text, positive in rows:
            if text.strip() and positive.strip():
                yield text, positive


def _csv_pairs(file, path: str) -> Iterator[Tuple[str, str]]:
    reader = csv.reader(file)
    first = next(reader, None)
    if first is None:
        return
    names = [name.strip().lower() for name in first]
    positive_column = next((names.index(n) for n in ("text_aug", "positive") if n in names), None)
    has_header = "text" in names and positive_column is not None
    columns, width = ((names.index("text"), positive_column), len(first)) if has_header else ((0, 1), 2)
    for row in reader if has_header else itertools.chain([first], reader):
        if not row:
            continue
        if len(row) != width:
            raise ValueError(f"{path}:{reader.line_num}: expected {width} fields, found {len(row)}")
        yield row[columns[0]], row[columns[1]]


def _jsonl_pairs(file, path: str) -> Iterator[Tuple[str, str]]:
    for number, line in enumerate(file, 1):
        if not line.strip():
            continue
        row = json.loads(line)
        positive = row.get("text_aug", row.get("positive")) if isinstance(row, dict) else None
        if not isinstance(positive, str) or not isinstance(row.get("text"), str):
            raise ValueError(f"{path}:{number}: expected an object with string fields text and text_aug")
        yield row["text"], positive


def pair_chunks(pairs: Iterable[Pair], max_pairs: int = 1000, max_bytes: int = 1 << 20) -> Iterator[ft.PairChunk]:
    """Uploads in PairChunk messages of at most `max_pairs` pairs and `max_bytes` of text (or one longer pair),
    far below the transport's frame limit."""
    chunk, size = ft.PairChunk(), 0
    for index, pair in enumerate(pairs):
        text, positive = _pair_texts(pair, index)
        pair_size = len(text.encode()) + len(positive.encode())
        if chunk.pairs and (len(chunk.pairs) == max_pairs or size + pair_size > max_bytes):
            yield chunk
            chunk, size = ft.PairChunk(), 0
        chunk.pairs.add(text=text, positive=positive)
        size += pair_size
    if chunk.pairs:
        yield chunk


def _pair_texts(pair: Pair, index: int) -> Tuple[str, str]:
    if isinstance(pair, dict):
        positive = pair.get("positive", pair.get("text_aug"))
        text = pair.get("text")
    elif isinstance(pair, (tuple, list)) and len(pair) == 2:
        text, positive = pair
    else:
        text = positive = None
    if not isinstance(text, str) or not isinstance(positive, str):
        raise TypeError(f"pair #{index}: expected (text, positive) strings or a dict with 'text' and 'positive'")
    return text, positive


def write_file_chunks(chunks: Iterable[common.FileChunk], directory: Union[str, os.PathLike]) -> List[str]:
    """Writes a FileChunk transfer into `directory`; returns the files written. A gap, an overlap, a size
    mismatch or an unsafe path raises DataLoss, as the protocol asks of receivers."""
    def data_loss(message: str):
        return error_for_status(env.DATA_LOSS, message)

    root = os.path.abspath(os.fspath(directory))
    os.makedirs(root, exist_ok=True)
    written, current, expected_offset, file_size = [], None, 0, 0
    try:
        for chunk in chunks:
            if current is None:
                relative = os.path.normpath(chunk.path)
                if not chunk.path or os.path.isabs(chunk.path) or relative.split(os.sep)[0] == "..":
                    raise data_loss(f"unsafe file path {chunk.path!r} in transfer")
                target = os.path.join(root, relative)
                os.makedirs(os.path.dirname(target), exist_ok=True)
                current, expected_offset, file_size = open(target, "wb"), 0, chunk.file_size
                written.append(target)
            elif os.path.join(root, os.path.normpath(chunk.path)) != written[-1]:
                raise data_loss(f"{chunk.path}: started before {written[-1]} was complete")
            if chunk.offset != expected_offset or chunk.file_size != file_size:
                raise data_loss(f"{chunk.path}: chunk at offset {chunk.offset} (size {chunk.file_size}), expected "
                                f"offset {expected_offset} (size {file_size})")
            current.write(chunk.data)
            expected_offset += len(chunk.data)
            if chunk.last:
                current.close()
                current = None
                if expected_offset != file_size:
                    raise data_loss(f"{chunk.path}: received {expected_offset} of {file_size} bytes")
        if current is not None:
            raise data_loss(f"transfer ended inside {written[-1]}")
    finally:
        if current is not None:
            current.close()
    return written
