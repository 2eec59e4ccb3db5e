"""A scripted Condense peer for the C client's protocol edge cases (PING, foreign streams, frame limit,
GOAWAY, connection errors, local deadline). Serves one connection, then exits 0 if the client sent
what Protos/README.md requires, else prints why and exits 1.

    python3 fake_server.py SCENARIO PORT_FILE
"""
import os
import socket
import struct
import sys

import condense_client  # noqa: F401  (makes the generated `condense.v1` modules importable)
from condense.v1 import common_pb2 as common
from condense.v1 import embedding_pb2 as emb
from condense.v1 import envelope_pb2 as env

EMBED = "/condense.v1.EmbeddingService/Embed"
PING_PAYLOAD = b"\x01\x02\x03\x04\x05\x06\x07\x08"


def fail(message):
    print(f"fake_server: {message}", file=sys.stderr)
    sys.exit(1)


def frame(envelope):
    body = envelope.SerializeToString()
    return struct.pack(">I", len(body)) + body


def read_exact(conn, n):
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def receive(conn):
    prefix = read_exact(conn, 4)
    if prefix is None:
        return None
    body = read_exact(conn, struct.unpack(">I", prefix)[0])
    envelope = env.Envelope()
    envelope.ParseFromString(body)
    return envelope


def expect(condition, message):
    if not condition:
        fail(message)


def receive_request(conn):
    """HEADERS, one MESSAGE and the half-close on stream 1; returns (headers, EmbedRequest)."""
    headers = receive(conn)
    expect(headers is not None and headers.kind == env.FRAME_KIND_HEADERS, f"expected HEADERS, got {headers}")
    expect(headers.stream_id == 1 and headers.method == EMBED, f"bad HEADERS {headers}")
    message = receive(conn)
    expect(message is not None and message.kind == env.FRAME_KIND_MESSAGE and message.stream_id == 1,
           f"expected MESSAGE(1), got {message}")
    request = emb.EmbedRequest()
    request.ParseFromString(message.payload)
    half_close = receive(conn)
    expect(half_close is not None and half_close.kind == env.FRAME_KIND_TRAILERS and half_close.stream_id == 1
           and not half_close.HasField("status"), f"expected half-close TRAILERS(1), got {half_close}")
    return headers, request


def ok_response():
    response = emb.EmbedResponse(model="fake")
    response.results.add(index=0, vector=common.Vector(precision=common.PRECISION_FLOAT32,
                                                       values=[0.5, -0.25, 1, 2, 3, 4, 5], dimensions=7))
    response.results.add(index=1, error=common.ItemError(code=common.ITEM_ERROR_CODE_EMPTY_TEXT,
                                                         message="text is empty"))
    return response


def scenario_ping(conn):
    # Client ran with: --token t0k --timeout-ms 5000 --prompt 'Q: {text}' --pooling last, texts "a" "".
    headers, request = receive_request(conn)
    metadata = [(m.key, m.value) for m in headers.metadata]
    expect(metadata == [("authorization", "Bearer t0k")], f"metadata {metadata}")
    expect(headers.timeout_ms == 5000, f"timeout_ms {headers.timeout_ms}")
    expect(list(request.texts) == ["a", ""], f"texts {list(request.texts)}")
    expect(request.options.WhichOneof("prompt") == "prompt_template"
           and request.options.prompt_template == "Q: {text}", f"options {request.options}")
    expect(request.options.pooling == common.POOLING_LAST, f"pooling {request.options.pooling}")
    # Frames of other streams and of the connection that the client must skip.
    noise = (frame(env.Envelope(stream_id=3, kind=env.FRAME_KIND_MESSAGE, payload=b"\xff\xff"))
             + frame(env.Envelope(stream_id=5, kind=env.FRAME_KIND_TRAILERS,
                                  status=env.Status(code=env.INTERNAL, message="not yours")))
             + frame(env.Envelope(stream_id=1, kind=env.FRAME_KIND_WINDOW_UPDATE, window_increment=32))
             + frame(env.Envelope(kind=env.FRAME_KIND_PING, payload=b"acked", ping_ack=True))
             + frame(env.Envelope(kind=env.FRAME_KIND_PING, payload=PING_PAYLOAD)))
    conn.sendall(noise)
    ack = receive(conn)
    expect(ack is not None and ack.kind == env.FRAME_KIND_PING and ack.ping_ack and ack.payload == PING_PAYLOAD
           and ack.stream_id == 0, f"expected the PING echo, got {ack}")
    reply = (frame(env.Envelope(stream_id=1, kind=env.FRAME_KIND_MESSAGE,
                                payload=ok_response().SerializeToString()))
             + frame(env.Envelope(stream_id=1, kind=env.FRAME_KIND_TRAILERS, status=env.Status())))
    # Split in odd places: the client must reassemble by length only.
    for start in range(0, len(reply), 3):
        conn.sendall(reply[start:start + 3])


def scenario_worked_example(conn):
    # Client ran with: --token s3cret --timeout-ms 5000 ADDRESS hello. Protos/README.md §10 gives the bytes.
    expected = bytes.fromhex(
        "0000004c" "0801" "1001"
        "1a23" + "/condense.v1.EmbeddingService/Embed".encode().hex()
        + "221e" "0a0d" + b"authorization".hex() + "120d" + b"Bearer s3cret".hex()
        + "288827"
        "0000000d" "08011002" "3207" "0a05" + b"hello".hex()
        + "00000004" "08011003")
    received = read_exact(conn, len(expected))
    expect(received == expected, f"bytes differ from README §10:\n got {received and received.hex()}\nwant {expected.hex()}")
    response = emb.EmbedResponse(model="fake")
    response.results.add(index=0, vector=common.Vector(values=[0.25, 0.75]))
    conn.sendall(frame(env.Envelope(stream_id=1, kind=env.FRAME_KIND_MESSAGE, payload=response.SerializeToString()))
                 + bytes.fromhex("00000006" "08011003" "3a00"))


def scenario_oversize(conn):
    receive_request(conn)
    conn.sendall(struct.pack(">I", 16 * 1024 * 1024 + 1) + b"\x08\x01")


def scenario_status(conn):
    receive_request(conn)
    conn.sendall(frame(env.Envelope(stream_id=1, kind=env.FRAME_KIND_TRAILERS,
                                    status=env.Status(code=env.RESOURCE_EXHAUSTED, message="busy",
                                                      retry_after_ms=200))))


def scenario_goaway(conn):
    receive_request(conn)
    conn.sendall(frame(env.Envelope(stream_id=0, kind=env.FRAME_KIND_GOAWAY,
                                    status=env.Status(code=env.UNAVAILABLE, message="server shutting down"))))


def scenario_connection_error(conn):
    receive_request(conn)
    conn.sendall(frame(env.Envelope(stream_id=0, kind=env.FRAME_KIND_TRAILERS,
                                    status=env.Status(code=env.INVALID_ARGUMENT, message="bad frame")))
                 + frame(env.Envelope(stream_id=1, kind=env.FRAME_KIND_GOAWAY,
                                      status=env.Status(code=env.UNAVAILABLE, message="closing"))))


def scenario_silent(conn):
    # Client ran with --timeout-ms 300: it must give up locally and CANCEL stream 1.
    receive_request(conn)
    cancel = receive(conn)
    expect(cancel is not None and cancel.kind == env.FRAME_KIND_CANCEL and cancel.stream_id == 1,
           f"expected CANCEL(1) after the deadline, got {cancel}")


def scenario_closed(conn):
    receive_request(conn)


SCENARIOS = {
    "worked-example": scenario_worked_example, "ping": scenario_ping, "oversize": scenario_oversize, "status": scenario_status, "goaway": scenario_goaway,
    "connection-error": scenario_connection_error, "silent": scenario_silent, "closed": scenario_closed,
}


def main():
    scenario, port_file = SCENARIOS[sys.argv[1]], sys.argv[2]
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(60)
    with open(port_file + ".tmp", "w") as f:
        f.write(str(listener.getsockname()[1]))
    # Renamed into place so the waiting script never reads a half-written port.
    os.replace(port_file + ".tmp", port_file)
    conn, _ = listener.accept()
    conn.settimeout(30)
    with conn:
        scenario(conn)
        # Wait for the client to close: it must not need anything more from us.
        conn.settimeout(10)
        try:
            while conn.recv(4096):
                pass
        except (socket.timeout, ConnectionResetError):
            pass
    listener.close()


if __name__ == "__main__":
    main()
