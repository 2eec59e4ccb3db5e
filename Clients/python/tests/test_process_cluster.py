"""A coordinator, two embedding workers and a training worker as separate processes (the binary from CONDENSE_BIN,
started here, serving the tiny random-weight test model): 20,000 texts streamed through the Python client while
one embedding worker is SIGKILLed mid-stream all arrive, exactly once, bit-identical to a local `condense embed`
run of the same texts."""
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from condense_client import Client

BINARY = os.environ.get("CONDENSE_BIN")
TINY_MODEL = Path(__file__).resolve().parents[3] / "Tests/CondenseModelTests/Fixtures/tiny-llama"
pytestmark = [
    pytest.mark.skipif(not BINARY, reason="CONDENSE_BIN not set (run scripts/test-python-client.sh)"),
    pytest.mark.skipif(not (TINY_MODEL / "model.safetensors").is_file(),
                       reason=f"tiny test model missing in {TINY_MODEL} (run scripts/gen-test-models.py)"),
]

TEXT_COUNT = 20_000
# Explicit on both sides, so that the server's defaults (normalized) and the CLI's (not) do not matter.
OPTIONS = dict(prompt="cluster1", pooling="mean", normalize=True)
LOCAL_FLAGS = ["--prompt", "cluster1", "--pooling", "mean", "--normalize"]


def texts(count):
    """Distinct texts of a word and the index: few tokens each, so that even a debug build embeds them quickly."""
    words = ["alpha", "river", "stone", "quick", "blue", "cloud", "seven", "lamp", "north", "green", "paper"]
    return [f"{words[i % len(words)]} {i}" for i in range(count)]


class Cluster:
    """`condense coordinator` on a free loopback port, and workers that dial it; `stop` ends them all."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.processes = {}
        state = directory / "state"
        # A long heartbeat timeout: a killed worker must be lost through its closed connection, not silence.
        coordinator = self.start("coordinator", ["coordinator", "--listen", "127.0.0.1:0", "--state", str(state),
                                                 "--heartbeat-timeout", "120"])
        for _ in range(600):
            try:
                written = json.loads((state / "coordinator.json").read_text())
                self.address = written["listen"]
                return
            except (OSError, ValueError, KeyError):
                assert coordinator.poll() is None, f"coordinator exited:\n{self.log('coordinator')}"
                time.sleep(0.05)
        raise AssertionError(f"the coordinator wrote no coordinator.json:\n{self.log('coordinator')}")

    def start(self, name, arguments):
        with open(self.directory / f"{name}.log", "ab") as log:
            process = subprocess.Popen([BINARY, *arguments], stdout=subprocess.DEVNULL, stderr=log)
        self.processes[name] = process
        return process

    def worker(self, kind, name, *extra):
        return self.start(name, ["worker", kind, "--coordinator", self.address, "--model", str(TINY_MODEL),
                                 "--worker-id", name, *extra])

    def log(self, name):
        return (self.directory / f"{name}.log").read_text(errors="replace")

    def wait_for_log(self, name, *parts, timeout=60.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(all(part in line for part in parts) for line in self.log(name).splitlines()):
                return
            time.sleep(0.1)
        raise AssertionError(f"{name} logged no line with {parts}:\n{self.log(name)}")

    def stop(self):
        for process in reversed(list(self.processes.values())):
            if process.poll() is None:
                process.send_signal(signal.SIGCONT)  # a stopped process acts on SIGTERM only once continued
                process.terminate()
            process.wait()


@pytest.fixture
def cluster(tmp_path):
    running = Cluster(tmp_path)
    yield running
    running.stop()


def wait_for_health(client, detail, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, current = client.health()
        if current.startswith(detail + ":"):  # "2 embedding workers: tiny-llama"
            return
        time.sleep(0.1)
    raise AssertionError(f"health is {current!r}, expected {detail!r}")


def local_vectors(directory: Path, inputs):
    """What `condense embed` computes locally (no --server) for `inputs`, read back from its .npy output."""
    source, output = directory / "texts.txt", directory / "local.npy"
    source.write_text("".join(text + "\n" for text in inputs), encoding="utf-8")
    subprocess.run([BINARY, "embed", "--model", str(TINY_MODEL), *LOCAL_FLAGS, "--input", str(source),
                    "--output", str(output)], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return np.load(output)


def test_a_worker_killed_mid_stream_loses_no_vector(cluster, tmp_path):
    inputs = texts(TEXT_COUNT)
    expected = local_vectors(tmp_path, inputs)
    assert expected.shape == (TEXT_COUNT, 32) and expected.dtype == np.float32

    victim = cluster.worker("embed", "w1")
    cluster.worker("embed", "w2")
    cluster.worker("train", "t1", "--work-dir", str(tmp_path / "work-t1"))
    with Client(cluster.address, timeout=180) as client:
        wait_for_health(client, "2 embedding workers")
        cluster.wait_for_log("coordinator", "training worker registered", "worker=t1")

        delivered = np.full((TEXT_COUNT, expected.shape[1]), np.nan, dtype=np.float32)
        seen = np.zeros(TEXT_COUNT, dtype=bool)
        received, frozen_at, killed_at = 0, None, None
        for index, vector in client.embed_stream(inputs, **OPTIONS):
            assert 0 <= index < TEXT_COUNT and not seen[index], f"index {index} out of range or delivered twice"
            seen[index] = True
            delivered[index] = vector
            received += 1
            # Halfway w1 freezes: the coordinator hands it batches it never answers...
            if frozen_at is None and received >= TEXT_COUNT // 2:
                victim.send_signal(signal.SIGSTOP)
                frozen_at = received
            # ...so that once w2 has done a few more, w1 surely holds some when it dies.
            if killed_at is None and frozen_at is not None and received >= frozen_at + 8 * 64:
                victim.kill()
                killed_at = received
        assert killed_at is not None and killed_at < TEXT_COUNT, "w1 was not killed mid-stream"
        assert received == TEXT_COUNT and seen.all()
        # In input order (rows by index), bit for bit the local run's vectors.
        differing = np.flatnonzero((delivered.view(np.uint32) != expected.view(np.uint32)).any(axis=1))
        assert differing.size == 0, f"{differing.size} vectors differ from the local run, first {differing[:10]}"
        assert victim.wait() == -signal.SIGKILL

        # The coordinator re-queued what w1 held and serves on with w2; the training worker stayed.
        wait_for_health(client, "1 embedding worker")
        lines = cluster.log("coordinator").splitlines()
        left = [line for line in lines if "worker left" in line and "worker=w1" in line]
        assert len(left) == 1 and int(left[0].split("requeued_batches=")[1].split()[0]) > 0, left
        assert not [line for line in lines if "worker left" in line and "worker=t1" in line]
