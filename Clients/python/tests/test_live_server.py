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
    with Client(ADDRESS, timeout=120) as c:
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
