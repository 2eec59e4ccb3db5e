"""Fine-tuning calls against a live `condense coordinator` (the binary from CONDENSE_BIN, started here). No
training worker dials in, so jobs stay QUEUED until cancelled."""
import os
import socket
import subprocess
import time

import pytest

import condense_client
from condense_client import Client, read_pairs

BINARY = os.environ.get("CONDENSE_BIN")
pytestmark = pytest.mark.skipif(not BINARY, reason="CONDENSE_BIN not set (run scripts/test-python-client.sh)")

PAIRS = [(f"question {i} about topic {i % 5}", f"a rephrased question {i} on topic {i % 5}") for i in range(40)]


class Coordinator:
    """A coordinator process on a fixed port and state directory; `restart` keeps both."""

    def __init__(self, state_directory):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.address = f"127.0.0.1:{s.getsockname()[1]}"
        self.state_directory = str(state_directory)
        self.log = open(os.path.join(self.state_directory, "coordinator.log"), "ab")
        self.process = None
        self.start()

    def start(self):
        self.process = subprocess.Popen([BINARY, "coordinator", "--listen", self.address, "--state",
                                         os.path.join(self.state_directory, "state")], stderr=self.log)
        for _ in range(200):
            try:
                with Client(self.address, timeout=5) as client:
                    client.list_jobs(limit=1)
                return
            except condense_client.Unavailable:
                assert self.process.poll() is None, "coordinator exited; see coordinator.log"
                time.sleep(0.1)
        raise AssertionError("coordinator did not come up")

    def kill(self):
        self.process.kill()
        self.process.wait()

    def restart(self):
        self.kill()
        self.start()


@pytest.fixture(scope="module")
def coordinator(tmp_path_factory):
    server = Coordinator(tmp_path_factory.mktemp("coordinator"))
    yield server
    server.kill()


@pytest.fixture
def client(coordinator):
    with Client(coordinator.address, timeout=60) as c:
        yield c


def test_job_lifecycle_create_get_list_watch_cancel(client):
    job = client.create_fine_tune_job(PAIRS, name="lifecycle", epochs=2, batch_size=8, lora_rank=8,
                                      prompt="cluster1", pooling="mean", seed=7)
    assert job.state == "queued" and job.job_id and job.name == "lifecycle"
    assert (job.pair_count, job.total_steps) == (40, 10)
    assert job.spec.hyperparameters.lora_rank == 8 and job.spec.hyperparameters.HasField("seed")

    assert client.get_job(job.job_id).state == "queued"
    assert job.job_id in [j.job_id for j in client.list_jobs()]
    assert job.job_id in [j.job_id for j in client.list_jobs(states=["queued"])]
    assert job.job_id not in [j.job_id for j in client.list_jobs(states=["running", "succeeded"])]
    assert client.list_jobs(limit=1)[0].job_id == client.list_jobs()[0].job_id

    first = next(client.watch_job(job.job_id, timeout=30))  # leaving the generator cancels the call
    assert (first.sequence, first.kind, first.job_id) == (1, "queued", job.job_id)

    cancelled = client.cancel_job(job.job_id, reason="test over")
    assert cancelled.state == "cancelled" and cancelled.done
    events = list(client.watch_job(job.job_id, timeout=30))
    assert [e.kind for e in events] == ["queued", "cancelled"]
    assert [e.sequence for e in events] == [1, 2] and events[-1].details == {"reason": "test over"}
    assert [e.kind for e in client.watch_job(job.job_id, after_sequence=1, timeout=30)] == ["cancelled"]
    assert client.cancel_job(job.job_id).state == "cancelled"  # a finished job comes back unchanged


def test_cancel_from_inside_the_watch_loop(client):
    job = client.create_fine_tune_job(PAIRS[:4], batch_size=2)
    kinds = []
    for event in client.watch_job(job.job_id, timeout=30):
        kinds.append(event.kind)
        if event.kind == "queued":
            client.cancel_job(job.job_id)  # the watch has a connection of its own: no deadlock
    assert kinds == ["queued", "cancelled"]


def test_pairs_from_a_local_file_and_a_server_side_path(client, tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_text("text,text_aug\n" + "".join(f'"{a}","{b}"\n' for a, b in PAIRS[:10]), encoding="utf-8")
    uploaded = client.create_fine_tune_job(read_pairs(path), steps=3, batch_size=4)
    assert (uploaded.pair_count, uploaded.total_steps) == (10, 3)
    by_path = client.create_fine_tune_job(pairs_path=str(path), batch_size=4)
    assert by_path.spec.pairs_path == str(path) and by_path.state in ("validating", "queued")
    missing = client.create_fine_tune_job(pairs_path=str(tmp_path / "missing.csv"))
    assert missing.state == "failed" and "missing.csv" in missing.error
    assert [e.kind for e in client.watch_job(missing.job_id, timeout=30)][-1] == "failed"
    for job in (uploaded, by_path):
        client.cancel_job(job.job_id)


@pytest.mark.parametrize("bad", [dict(batch_size=1), dict(learning_rate=-1.0), dict(lora_rank=1000),
                                 dict(lora_dropout=1.5), dict(target_modules=["attention"]), dict(steps=0),
                                 dict(prompt="no placeholder here")])
def test_invalid_hyperparameters_are_invalid_argument_and_create_no_job(client, bad):
    before = len(client.list_jobs())
    with pytest.raises(condense_client.InvalidArgument):
        client.create_fine_tune_job(PAIRS, **bad)
    assert len(client.list_jobs()) == before


def test_invalid_uploads_are_invalid_argument(client):
    with pytest.raises(condense_client.InvalidArgument, match="empty"):
        client.create_fine_tune_job([("a", "b"), ("c", "")])
    with pytest.raises(condense_client.InvalidArgument, match="cannot fill a batch"):
        client.create_fine_tune_job(PAIRS[:3], batch_size=8)
    with pytest.raises(ValueError, match="either pairs"):
        client.create_fine_tune_job()


def test_unknown_ids_are_not_found(client, tmp_path):
    for call in (lambda: client.get_job("ft-does-not-exist"), lambda: client.cancel_job("ft-does-not-exist"),
                 lambda: list(client.watch_job("ft-does-not-exist", timeout=30)),
                 lambda: client.get_adapter("no-such-adapter"),
                 lambda: client.download_adapter("no-such-adapter", tmp_path / "adapter")):
        with pytest.raises(condense_client.NotFound):
            call()
    assert client.list_adapters() == []


def test_watch_timeout_is_deadline_exceeded(client):
    job = client.create_fine_tune_job(PAIRS[:4], batch_size=2)
    with pytest.raises(condense_client.DeadlineExceeded):
        list(client.watch_job(job.job_id, after_sequence=1, timeout=1))
    client.cancel_job(job.job_id)


def test_watch_resumes_after_the_coordinator_restarts(tmp_path):
    server = Coordinator(tmp_path)
    try:
        with Client(server.address, timeout=60) as client:
            job = client.create_fine_tune_job(PAIRS[:4], batch_size=2)
            events = client.watch_job(job.job_id, timeout=120, retry_delay=0.2)
            assert next(events).kind == "queued"
            server.restart()  # the watch's connection and the client's connection both drop
            assert client.cancel_job(job.job_id).state == "cancelled"  # retried on a new connection
            rest = list(events)
        # The restart re-queues the job; the resumed watch continues after sequence 1 without repeats.
        assert [e.sequence for e in rest] == list(range(2, 2 + len(rest)))
        assert rest[-1].kind == "cancelled"
    finally:
        server.kill()


def test_watch_gives_up_after_bounded_retries():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = Client.__new__(Client)  # a client whose server is gone: only watch_job's own connections are made
    client._host, client._port, client._token = "127.0.0.1", port, None
    client._tls, client._server_name = None, None
    with pytest.raises(condense_client.Unavailable, match="cannot connect"):
        list(client.watch_job("ft-0001", max_retries=2, retry_delay=0.05))
