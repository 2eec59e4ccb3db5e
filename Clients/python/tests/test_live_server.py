"""The Python client against a live `condense serve` (started by scripts/test-python-client.sh)."""
import os
import socket
import struct
import subprocess

import numpy as np
import pytest

import condense_client
from condense_client import Client
from condense.v1 import envelope_pb2 as env

ADDRESS = os.environ.get("CONDENSE_SERVER")
pytestmark = pytest.mark.skipif(not ADDRESS, reason="CONDENSE_SERVER not set (run scripts/test-python-client.sh)")


@pytest.fixture
def client():
    with Client(ADDRESS, timeout=600) as c:
        yield c


def test_health_reports_serving(client):
    status, detail = client.health()
    assert status == "serving"
    assert detail.endswith(".gguf")


def test_model_info_describes_default_model(client):
    info = client.model_info()
    assert info.architecture == "llama"
    assert (info.dimensions, info.layers, info.heads, info.kv_heads) == (576, 30, 9, 3)
    assert info.vocab_size == 49152
    assert info.quantization == "Q4_1"
    assert info.blas_core and info.blas_core != "Prescott"


def test_unknown_method_is_unimplemented():
    host, _, port = ADDRESS.rpartition(":")
    with socket.create_connection((host, int(port)), timeout=30) as s:
        frames = b""
        for e in (env.Envelope(stream_id=1, kind=env.FRAME_KIND_HEADERS, method="/condense.v1.Nope/Missing"),
                  env.Envelope(stream_id=1, kind=env.FRAME_KIND_MESSAGE, payload=b""),
                  env.Envelope(stream_id=1, kind=env.FRAME_KIND_TRAILERS)):
            body = e.SerializeToString()
            frames += struct.pack(">I", len(body)) + body
        s.sendall(frames)
        buffer = b""
        while True:
            while len(buffer) < 4 or len(buffer) < 4 + struct.unpack(">I", buffer[:4])[0]:
                chunk = s.recv(65536)
                assert chunk, "server closed the connection"
                buffer += chunk
            length = struct.unpack(">I", buffer[:4])[0]
            reply = env.Envelope()
            reply.ParseFromString(buffer[4:4 + length])
            buffer = buffer[4 + length:]
            if reply.kind == env.FRAME_KIND_TRAILERS:
                break
        assert reply.stream_id == 1
        assert reply.status.code == env.UNIMPLEMENTED


def test_typed_exception_for_status_code():
    with Client(ADDRESS) as c:
        with pytest.raises(condense_client.Unimplemented):
            list(c._connection.call("/condense.v1.EmbeddingService/NoSuchMethod", [b""]))


def test_health_cli_exit_codes():
    binary = os.environ["CONDENSE_BIN"]
    ok = subprocess.run([binary, "health", "--server", ADDRESS], capture_output=True, text=True)
    assert ok.returncode == 0 and ok.stdout.startswith("serving")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    down = subprocess.run([binary, "health", "--server", f"127.0.0.1:{closed_port}", "--timeout", "2"],
                          capture_output=True, text=True)
    assert down.returncode != 0


def test_embed_returns_normalized_vectors_that_rank_paraphrases_closer(client):
    texts = ["A man is playing a guitar.", "Someone plays the guitar.", "The stock market fell sharply today."]
    vectors = client.embed(texts, prompt="cluster1", pooling="mean")
    assert vectors.shape == (3, 576) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    similarity = vectors @ vectors.T
    assert similarity[0, 1] > similarity[0, 2]


def test_embed_options_dimensions_and_raw_vectors(client):
    raw = client.embed(["hello world"], pooling="last", normalize=False)
    cut = client.embed(["hello world"], pooling="last", normalize=True, dimensions=64)
    assert cut.shape == (1, 64)
    np.testing.assert_allclose(cut[0], raw[0, :64] / np.linalg.norm(raw[0, :64]), rtol=1e-4, atol=1e-5)


def test_empty_text_fails_only_that_item(client):
    with pytest.raises(condense_client.EmbeddingItemError) as failure:
        client.embed(["fine", "   "])
    assert list(failure.value.errors) == [1]


def test_bad_template_is_invalid_argument(client):
    with pytest.raises(condense_client.InvalidArgument, match="named prompts"):
        client.embed(["x"], prompt="no placeholder here")
    with pytest.raises(condense_client.InvalidArgument, match="dimensions"):
        client.embed(["x"], dimensions=100000)


def test_embed_stream_delivers_every_index_once_matching_unary(client):
    texts = [f"sentence number {i} about topic {i % 7}" for i in range(200)]
    streamed = dict()
    for index, vector in client.embed_stream(iter(texts), chunk_size=50, prompt="cluster1"):
        assert index not in streamed
        streamed[index] = vector
    assert sorted(streamed) == list(range(200))
    unary = client.embed(texts[:5], prompt="cluster1")
    for i in range(5):
        assert float(streamed[i] @ unary[i]) > 0.99999


def test_tokenize_applies_prompt(client):
    plain, prompted = client.tokenize(["Hello world!"]), client.tokenize(["Hello world!"], prompt="cluster1")
    assert plain == [[19556, 905, 17]]
    assert len(prompted[0]) > len(plain[0])


def test_encode_matches_embed_in_input_order(client, monkeypatch, capsys):
    monkeypatch.setattr(condense_client.progress, "tqdm", None)
    texts = [f"sentence number {i} about topic {i % 7}" for i in range(70)]
    streamed = client.encode(texts, batch_size=16, prompt="cluster1", show_progress_bar=True)  # EmbedStream
    # A slow run may print periodic lines first; the closing line sums up.
    assert capsys.readouterr().err.splitlines()[-1].startswith("Embedding: 70/70 texts (100%), ")
    unary = client.embed(texts, prompt="cluster1")
    assert streamed.shape == (70, 576) and streamed.dtype == np.float32
    np.testing.assert_allclose(np.sum(streamed * unary, axis=1), 1.0, atol=1e-5)
    small = client.encode(texts[:5], prompt="cluster1", normalize_embeddings=False, pooling="last")
    np.testing.assert_allclose(small, client.embed(texts[:5], prompt="cluster1", normalize=False, pooling="last"))
    single = client.encode(texts[3], prompt="cluster1")
    assert single.shape == (576,) and float(single @ unary[3]) > 0.99999


def test_encode_item_errors_name_the_index(client):
    texts = ["fine"] * 20 + ["   "] + ["also fine"] * 20
    with pytest.raises(condense_client.EmbeddingItemError, match="#20") as failure:
        client.encode(texts, batch_size=8)
    assert list(failure.value.errors) == [20]
    rows = client.encode(texts, batch_size=8, on_error="none")
    assert np.isnan(rows[20]).all() and not np.isnan(np.delete(rows, 20, axis=0)).any()
