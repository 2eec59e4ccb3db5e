"""The Python client over TLS against a live `condense serve --tls-cert ...` (the binary from CONDENSE_BIN,
started here with the tiny test model), and against a plaintext `condense coordinator`. Certificates come from
scripts/gen-tls-fixtures.sh (needs openssl)."""
import os
import shutil
import socket
import subprocess
import time

import numpy as np
import pytest

import condense_client
from condense_client import Client

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
BINARY = os.environ.get("CONDENSE_BIN")
TINY_MODEL = os.path.join(ROOT, "Tests", "CondenseModelTests", "Fixtures", "tiny-llama.gguf")
TOKEN = "tls-test-secret"

pytestmark = [
    pytest.mark.skipif(not BINARY, reason="CONDENSE_BIN not set (run scripts/test-python-client.sh)"),
    pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not found: no test certificates"),
    pytest.mark.skipif(not os.path.exists(TINY_MODEL), reason="tiny test model missing (python3 scripts/gen-test-models.py)"),
]


def free_address():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def start(arguments, directory, ready):
    """Starts `condense ARGUMENTS`, logging to DIRECTORY/server.log, until `ready()` stops raising Unavailable."""
    log = open(os.path.join(directory, "server.log"), "ab")
    process = subprocess.Popen([BINARY, *arguments], stderr=log)
    for _ in range(300):
        try:
            ready()
            return process
        except condense_client.Unavailable:
            assert process.poll() is None, f"condense exited; see {directory}/server.log"
            time.sleep(0.1)
    process.kill()
    raise AssertionError("condense did not come up")


def stop(process):
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="module")
def certificates(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tls")
    subprocess.run(["bash", os.path.join(ROOT, "scripts", "gen-tls-fixtures.sh"), str(directory)], check=True,
                   capture_output=True)
    return lambda name: str(directory / name)


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory, certificates):
    """`condense serve` over TLS with an auth token; yields its address once it reports serving."""
    directory = tmp_path_factory.mktemp("serve")
    token_file = directory / "token"
    token_file.write_text(TOKEN)
    address = free_address()

    def serving():
        with Client(address, token=TOKEN, timeout=5, ca_file=certificates("ca.pem")) as client:
            status, detail = client.health()
            if status != "serving":
                raise condense_client.Unavailable(0, detail)

    process = start(["serve", "--listen", address, "--model", TINY_MODEL, "--data-dir", str(directory / "data"),
                     "--auth-token-file", str(token_file),
                     "--tls-cert", certificates("server.pem"), "--tls-key", certificates("server.key")],
                    str(directory), serving)
    yield address
    stop(process)


def test_embedding_calls_over_tls_with_a_token(tls_server, certificates):
    with Client(tls_server, token=TOKEN, timeout=60, ca_file=certificates("ca.pem")) as client:
        vectors = client.encode(["a first text", "and a second one"])
        assert vectors.shape == (2, 32) and np.isfinite(vectors).all()
        streamed = dict(client.embed_stream((f"text {i}" for i in range(100)), chunk_size=16))
        assert sorted(streamed) == list(range(100))
        # The same text gives the same vector through Embed and EmbedStream (batched differently: float noise).
        single = client.embed(["text 7"])
        np.testing.assert_allclose(single[0], streamed[7], atol=1e-5)


def test_the_certificate_name_can_differ_from_the_address(tls_server, certificates):
    with Client(tls_server, token=TOKEN, timeout=60, ca_file=certificates("ca.pem"), server_name="localhost") as client:
        assert client.health()[0] == "serving"
    with pytest.raises(condense_client.Unavailable, match="not valid for 'db.example.org'"):
        Client(tls_server, token=TOKEN, ca_file=certificates("ca.pem"), server_name="db.example.org")


def test_plaintext_client_of_a_tls_server_is_told_to_use_tls(tls_server, certificates):
    with Client(tls_server, token=TOKEN, timeout=10) as plaintext:
        with pytest.raises(condense_client.Unavailable, match="requires TLS"):
            plaintext.health()
    # The server keeps serving TLS clients.
    with Client(tls_server, token=TOKEN, timeout=60, ca_file=certificates("ca.pem")) as client:
        assert client.health()[0] == "serving"


def test_untrusted_certificates_are_refused(tls_server, certificates):
    with pytest.raises(condense_client.Unavailable, match="not trusted"):
        Client(tls_server, token=TOKEN, ca_file=certificates("other-ca.pem"))
    with pytest.raises(condense_client.Unavailable, match="not trusted"):
        Client(tls_server, token=TOKEN, tls=True)  # system trust roots do not include the test CA
    with pytest.raises(condense_client.InvalidArgument, match="CA file"):
        Client(tls_server, token=TOKEN, ca_file=certificates("missing.pem"))


def test_tls_client_of_a_plaintext_server_fails_naming_tls(tmp_path, certificates):
    address = free_address()

    def listening():
        with Client(address, timeout=5) as client:
            client.list_jobs(limit=1)

    process = start(["coordinator", "--listen", address, "--state", str(tmp_path / "state")], str(tmp_path), listening)
    try:
        with pytest.raises(condense_client.Unavailable, match="does not speak TLS"):
            Client(address, ca_file=certificates("ca.pem"))
    finally:
        stop(process)
