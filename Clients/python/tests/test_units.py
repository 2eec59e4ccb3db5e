"""Client behaviour that needs no server: encode's ordering, progress output, hyperparameters, pair files,
adapter downloads, event and job values."""
import json
import os

import numpy as np
import pytest

import condense_client
from condense_client import Client, JobEvent, read_pairs
from condense_client import progress as progress_module
from condense_client.finetune import hyperparameters, pair_chunks, write_file_chunks
from condense.v1 import common_pb2 as common
from condense.v1 import embedding_pb2 as emb
from condense.v1 import finetune_pb2 as ft


class FakeServer:
    """Stands in for the transport: answers Embed and EmbedStream with vector [index, 1, 2] (out of order for
    the stream) and records the calls; texts that are blank fail as the server fails them."""

    def __init__(self):
        self.calls = []

    def __call__(self, method, requests, timeout):
        messages = list(requests)
        self.calls.append(method.rsplit("/", 1)[1])
        if method.endswith("/Embed"):
            request = emb.EmbedRequest()
            request.ParseFromString(messages[0])
            yield emb.EmbedResponse(results=self._results(list(request.texts), 0)).SerializeToString()
            return
        results = []
        for payload in messages:
            request = emb.EmbedStreamRequest()
            request.ParseFromString(payload)
            results += self._results(list(request.texts), request.first_index)
        results.reverse()  # batches finish in any order
        for start in range(0, len(results), 7):
            yield emb.EmbedStreamResponse(batch=emb.EmbeddingBatch(results=results[start:start + 7])).SerializeToString()
        yield emb.EmbedStreamResponse(summary=emb.EmbedStreamSummary(model="fake")).SerializeToString()

    @staticmethod
    def _results(texts, first):
        results = []
        for offset, text in enumerate(texts):
            result = common.EmbeddingResult(index=first + offset)
            if text.strip():
                result.vector.values.extend([first + offset, 1.0, 2.0])
            else:
                result.error.message = "empty text"
            results.append(result)
        return results


@pytest.fixture
def fake_client():
    client = Client.__new__(Client)  # no connection: every call goes to the fake
    client._timeout = None
    client._call = FakeServer()
    return client


@pytest.mark.parametrize("count,batch_size,expected_call", [(5, 64, "Embed"), (150, 32, "EmbedStream")])
def test_encode_returns_rows_in_input_order(fake_client, count, batch_size, expected_call):
    texts = [f"text {i}" for i in range(count)]
    matrix = fake_client.encode(texts, batch_size=batch_size)
    assert fake_client._call.calls == [expected_call]
    assert matrix.shape == (count, 3) and matrix.dtype == np.float32
    np.testing.assert_array_equal(matrix[:, 0], np.arange(count))


def test_encode_single_string_list_output_and_empty_input(fake_client):
    vector = fake_client.encode("one text")
    assert vector.shape == (3,)
    rows = fake_client.encode(["a", "b", "c"], convert_to_numpy=False)
    assert isinstance(rows, list) and [row[0] for row in rows] == [0, 1, 2]
    assert fake_client.encode([]).shape == (0, 0)


def test_encode_item_errors_name_every_failed_index(fake_client):
    texts = [f"text {i}" for i in range(100)]
    texts[3] = texts[71] = "  "
    with pytest.raises(condense_client.EmbeddingItemError, match="#3: empty text") as failure:
        fake_client.encode(texts, batch_size=16)
    assert list(failure.value.errors) == [3, 71]
    matrix = fake_client.encode(texts, batch_size=16, on_error="none")
    assert np.isnan(matrix[[3, 71]]).all() and not np.isnan(np.delete(matrix, [3, 71], axis=0)).any()
    rows = fake_client.encode(texts, batch_size=16, on_error="none", convert_to_numpy=False)
    assert rows[3] is None and rows[71] is None and rows[4][0] == 4


def test_progress_without_tqdm_prints_a_final_stderr_line(fake_client, monkeypatch, capsys):
    monkeypatch.setattr(progress_module, "tqdm", None)
    fake_client.encode([f"t{i}" for i in range(40)], batch_size=8, show_progress_bar=True)
    assert capsys.readouterr().err.splitlines()[-1].startswith("Embedding: 40/40 texts (100%), ")
    streamed = list(fake_client.embed_stream(iter(["x"] * 12), chunk_size=5, progress=True))
    assert len(streamed) == 12
    line = capsys.readouterr().err.splitlines()[-1]
    assert line.startswith("Embedding: 12 texts, ") and line.endswith(" s") and "texts/s" in line


def test_progress_without_tqdm_prints_periodic_lines(monkeypatch, capsys):
    monkeypatch.setattr(progress_module, "tqdm", None)
    with progress_module.Progress(3, interval=0.0) as bar:
        for _ in range(3):
            bar.update(1)
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(",")[0] for line in lines] == ["Embedding: 1/3 texts (33%)", "Embedding: 2/3 texts (67%)",
                                                      "Embedding: 3/3 texts (100%)", "Embedding: 3/3 texts (100%)"]


def test_progress_with_tqdm_shows_a_bar(fake_client, capsys):
    pytest.importorskip("tqdm")
    fake_client.encode([f"t{i}" for i in range(40)], batch_size=8, show_progress_bar=True)
    err = capsys.readouterr().err
    assert "40/40" in err and "texts/s" in err


def test_no_progress_output_unless_asked(fake_client, monkeypatch, capsys):
    monkeypatch.setattr(progress_module, "tqdm", None)
    fake_client.encode([f"t{i}" for i in range(40)], batch_size=8)
    assert capsys.readouterr().err == ""


def test_hyperparameters_follow_the_proto_names_and_presence():
    h = hyperparameters(epochs=2, batch_size=32, learning_rate=1e-4, lora_dropout=0.0, normalize=False, seed=0,
                        prompt="cluster1", pooling="weighted-mean", target_modules="q_proj", warmup_steps=None)
    assert h.WhichOneof("duration") == "epochs" and h.epochs == 2 and h.batch_size == 32
    assert h.HasField("lora_dropout") and h.HasField("normalize") and h.HasField("seed")
    assert h.prompt_name == "cluster1" and h.pooling == common.POOLING_WEIGHTED_MEAN
    assert list(h.target_modules) == ["q_proj"] and h.warmup_steps == 0
    assert hyperparameters(prompt="Q: {text}").prompt_template == "Q: {text}"
    assert not hyperparameters().HasField("lora_dropout")
    with pytest.raises(TypeError, match="lora_ranks"):
        hyperparameters(lora_ranks=8)
    with pytest.raises(ValueError, match="steps or epochs"):
        hyperparameters(steps=10, epochs=1)
    with pytest.raises(ValueError, match="unknown pooling"):
        hyperparameters(pooling="max")


def test_read_pairs_csv_and_jsonl(tmp_path):
    header = tmp_path / "pairs.csv"
    header.write_text('id,text_aug,text\n1,"b, with comma","a\nmultiline"\n2,,skipped\n3,d,c\n', encoding="utf-8")
    assert list(read_pairs(header)) == [("a\nmultiline", "b, with comma"), ("c", "d")]
    plain = tmp_path / "plain.csv"
    plain.write_text("\ufeffx,y\n\nz,w\n", encoding="utf-8")
    assert list(read_pairs(plain)) == [("x", "y"), ("z", "w")]
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("text,positive\na,b,c\n", encoding="utf-8")
    with pytest.raises(ValueError, match="ragged.csv:2: expected 2 fields, found 3"):
        list(read_pairs(ragged))
    lines = tmp_path / "pairs.jsonl"
    lines.write_text(json.dumps({"text": "a", "positive": "b"}) + "\n\n" + json.dumps({"text": "c", "text_aug": "d"}) + "\n")
    assert list(read_pairs(lines)) == [("a", "b"), ("c", "d")]
    with pytest.raises(ValueError, match="unsupported"):
        list(read_pairs(tmp_path / "pairs.txt"))


def test_pair_chunks_split_by_count_and_size():
    pairs = [("t%d" % i, "p%d" % i) for i in range(25)] + [{"text": "x" * 100, "text_aug": "y"}]
    chunks = list(pair_chunks(pairs, max_pairs=10, max_bytes=90))
    assert [len(c.pairs) for c in chunks] == [10, 10, 5, 1]
    assert chunks[3].pairs[0].positive == "y"
    with pytest.raises(TypeError, match="pair #1"):
        list(pair_chunks([("a", "b"), ("only one",)]))


def _chunks(*specs):
    return [common.FileChunk(path=p, offset=o, data=d, last=last, file_size=s) for p, o, d, last, s in specs]


def test_download_writes_files_and_rejects_damaged_transfers(tmp_path):
    written = write_file_chunks(_chunks(("adapter_config.json", 0, b"{}", True, 2),
                                        ("weights/a.bin", 0, b"abc", False, 5), ("weights/a.bin", 3, b"de", True, 5),
                                        ("empty", 0, b"", True, 0)), tmp_path / "out")
    assert [os.path.relpath(p, tmp_path / "out") for p in written] == ["adapter_config.json", "weights/a.bin", "empty"]
    assert (tmp_path / "out/weights/a.bin").read_bytes() == b"abcde"
    damaged = {
        "gap": _chunks(("a", 0, b"ab", False, 4), ("a", 3, b"c", True, 4)),
        "short": _chunks(("a", 0, b"ab", True, 3)),
        "size changes": _chunks(("a", 0, b"ab", False, 4), ("a", 2, b"cd", True, 5)),
        "unfinished": _chunks(("a", 0, b"ab", False, 4)),
        "interleaved": _chunks(("a", 0, b"ab", False, 4), ("b", 0, b"x", True, 1)),
        "escape": _chunks(("../evil", 0, b"x", True, 1)),
        "absolute": _chunks(("/tmp/evil", 0, b"x", True, 1)),
    }
    for name, chunks in damaged.items():
        with pytest.raises(condense_client.DataLoss):
            write_file_chunks(chunks, tmp_path / name)
    assert not (tmp_path / "evil").exists()


def test_job_event_and_job_values():
    event = JobEvent.from_proto(ft.JobEvent(sequence=4, job_id="ft-1", step=ft.StepMetrics(step=3, total_steps=9, loss=0.5)))
    assert (event.kind, event.details["step"], event.details["loss"], event.terminal) == ("step", 3, 0.5, False)
    assert JobEvent.from_proto(ft.JobEvent(cancelled=ft.JobCancelled(reason="r"))).terminal
    job = condense_client.FineTuneJob.from_proto(ft.FineTuneJob(job_id="ft-1", state=ft.JOB_STATE_SUCCEEDED,
                                                                adapter_id="ad"))
    assert (job.state, job.done, job.adapter_id) == ("succeeded", True, "ad")
