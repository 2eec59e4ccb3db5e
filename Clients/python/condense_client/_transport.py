"""Condense's gRPC-style framing over TCP (see Protos/README.md).

A frame is a 4-byte big-endian length followed by a serialized condense.v1.Envelope.
This module runs one call at a time per connection, which is all a synchronous client needs.
Socket failures surface as typed errors: UNAVAILABLE when the connection cannot be made or is lost (the
connection is then `broken` and must be replaced), or when the TLS handshake fails; DEADLINE_EXCEEDED when a
call's timeout passes without the server ending it.
"""
from __future__ import annotations

import socket
import ssl
import struct
from typing import Iterable, Iterator, Optional

from condense.v1 import envelope_pb2 as env

from .errors import RpcError, error_for_status

INITIAL_WINDOW = 64      # MESSAGE frames a sender may have outstanding per stream
GRANT_BATCH = 32         # we return credit to the server in batches of this size
MAX_FRAME = 16 * 1024 * 1024
SEND_BATCH_BYTES = 1 << 20   # queued request frames are written once they reach this size
DEADLINE_GRACE = 5.0     # the server enforces deadlines; the socket timeout only catches a silent server


def tls_context(ca_file: Optional[str] = None) -> ssl.SSLContext:
    """Verifies the server's certificate and name, against `ca_file` (PEM: a private CA or a self-signed
    certificate) or the system's trust roots."""
    try:
        return ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as error:
        raise error_for_status(env.INVALID_ARGUMENT, f"cannot load the TLS CA file {ca_file}: {error}") from error


class Connection:
    def __init__(self, host: str, port: int, token: Optional[str] = None, connect_timeout: float = 10.0,
                 tls: Optional[ssl.SSLContext] = None, server_name: Optional[str] = None):
        """`tls`: speak TLS with this context (see `tls_context`), checking the certificate against
        `server_name` or else `host`; the handshake must finish within `connect_timeout`."""
        try:
            self._sock = socket.create_connection((host, port), timeout=connect_timeout)
        except OSError as error:
            raise error_for_status(env.UNAVAILABLE, f"cannot connect to {host}:{port}: {error}") from error
        if tls is not None:
            self._sock = _handshake(self._sock, tls, server_name or host, f"{host}:{port}")
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock.settimeout(None)
        self._token = token
        self._next_stream = 1
        self._buffer = bytearray()
        self.broken = False

    def close(self) -> None:
        self._sock.close()

    # --- frames -------------------------------------------------------------------------
    def _send(self, *envelopes: env.Envelope) -> None:
        out = bytearray()
        for e in envelopes:
            body = e.SerializeToString()
            out += struct.pack(">I", len(body)) + body
        try:
            self._sock.sendall(out)
        except OSError as error:
            raise self._lost(error) from error

    def _read_exact(self, n: int) -> bytes:
        while len(self._buffer) < n:
            try:
                chunk = self._sock.recv(max(65536, n - len(self._buffer)))
            except OSError as error:
                raise self._lost(error) from error
            if not chunk:
                self.broken = True
                raise error_for_status(env.UNAVAILABLE, "connection closed by server")
            self._buffer += chunk
        data = bytes(self._buffer[:n])
        del self._buffer[:n]
        return data

    def _lost(self, error: OSError) -> RpcError:
        # A frame may be half written or half read: the connection cannot carry another call.
        self.broken = True
        if isinstance(error, socket.timeout):
            return error_for_status(env.DEADLINE_EXCEEDED, "no answer from the server within the call's timeout")
        return error_for_status(env.UNAVAILABLE, f"connection lost: {error}")

    def _receive(self) -> env.Envelope:
        (length,) = struct.unpack(">I", self._read_exact(4))
        if length > MAX_FRAME:
            self.broken = True  # the rest of the stream cannot be framed any more
            raise error_for_status(env.RESOURCE_EXHAUSTED, f"frame of {length} bytes exceeds {MAX_FRAME}")
        e = env.Envelope()
        e.ParseFromString(self._read_exact(length))
        return e

    # --- calls --------------------------------------------------------------------------
    def call(self, method: str, requests: Iterable[bytes], timeout: Optional[float] = None) -> Iterator[bytes]:
        """Runs one call of any kind; yields each response payload; raises RpcError on a non-OK status."""
        stream = self._next_stream
        self._next_stream += 2
        headers = env.Envelope(stream_id=stream, kind=env.FRAME_KIND_HEADERS, method=method)
        if timeout is not None:
            headers.timeout_ms = max(1, int(timeout * 1000))
        self._sock.settimeout(None if timeout is None else timeout + DEADLINE_GRACE)
        if self._token:
            headers.metadata.add(key="authorization", value=f"Bearer {self._token}")
        frames, pending_bytes = [headers], 0
        window, consumed = INITIAL_WINDOW, 0
        try:
            for payload in requests:
                while window == 0:
                    self._send(*frames)
                    frames, pending_bytes = [], 0
                    # Results come back while the upload waits for credit: hand them on now. The server
                    # reads no further input while its results go unread, so holding off would stall both.
                    e = self._stream_frame(stream)
                    if e.kind == env.FRAME_KIND_WINDOW_UPDATE:
                        window += e.window_increment
                    elif e.kind == env.FRAME_KIND_MESSAGE:
                        yield e.payload
                        consumed = self._credit(stream, consumed + 1)
                    elif self._ended(e):
                        return
                frames.append(env.Envelope(stream_id=stream, kind=env.FRAME_KIND_MESSAGE, payload=payload))
                window -= 1
                pending_bytes += len(payload)
                if pending_bytes >= SEND_BATCH_BYTES:
                    self._send(*frames)
                    frames, pending_bytes = [], 0
            frames.append(env.Envelope(stream_id=stream, kind=env.FRAME_KIND_TRAILERS))
            self._send(*frames)

            while True:
                e = self._stream_frame(stream)
                if e.kind == env.FRAME_KIND_MESSAGE:
                    yield e.payload
                    consumed = self._credit(stream, consumed + 1)
                elif self._ended(e):
                    return
        except GeneratorExit:
            # The caller stopped reading early: tell the server to stop working on this call.
            if not self.broken:
                try:
                    self._send(env.Envelope(stream_id=stream, kind=env.FRAME_KIND_CANCEL))
                except RpcError:
                    pass  # the connection is gone, and the call with it
            raise

    def _stream_frame(self, stream: int) -> env.Envelope:
        """The next frame of `stream`, answering connection frames (pings, errors) on the way."""
        while True:
            e = self._receive()
            if e.stream_id == 0:
                self._handle_connection_frame(e)
            elif e.stream_id == stream:
                return e

    def _credit(self, stream: int, consumed: int) -> int:
        """Counts a response read; returns credit to the server in batches of GRANT_BATCH."""
        if consumed < GRANT_BATCH:
            return consumed
        self._send(env.Envelope(stream_id=stream, kind=env.FRAME_KIND_WINDOW_UPDATE, window_increment=consumed))
        return 0

    @staticmethod
    def _ended(e: env.Envelope) -> bool:
        """True for the call's OK trailers; raises for error trailers or a cancel by the server."""
        if e.kind == env.FRAME_KIND_TRAILERS:
            if e.status.code != env.OK:
                raise error_for_status(e.status.code, e.status.message, e.status.retry_after_ms)
            return True
        if e.kind == env.FRAME_KIND_CANCEL:
            raise error_for_status(env.CANCELLED, e.status.message or "cancelled by server", 0)
        return False

    def _handle_connection_frame(self, e: env.Envelope) -> None:
        if e.kind == env.FRAME_KIND_PING and not e.ping_ack:
            self._send(env.Envelope(stream_id=0, kind=env.FRAME_KIND_PING, payload=e.payload, ping_ack=True))
        elif e.kind == env.FRAME_KIND_TRAILERS and e.status.code != env.OK:
            self.broken = True  # a connection-level error: the server closes the connection after it
            raise error_for_status(e.status.code, e.status.message, e.status.retry_after_ms)


def _handshake(sock: socket.socket, context: ssl.SSLContext, server_name: str, peer: str) -> ssl.SSLSocket:
    """Wraps `sock` in TLS; failures are UNAVAILABLE errors that say what went wrong."""
    try:
        return context.wrap_socket(sock, server_hostname=server_name)
    except ssl.SSLCertVerificationError as error:
        hostname_mismatch = error.verify_code == 62  # X509_V_ERR_HOSTNAME_MISMATCH
        reason = (f"the server's TLS certificate is not valid for '{server_name}'" if hostname_mismatch
                  else f"the server's TLS certificate is not trusted: {error.verify_message}")
    except ssl.SSLError as error:
        # A plaintext Condense server answers a ClientHello with a frame, not a TLS record.
        plaintext = "WRONG_VERSION_NUMBER" in str(error) or "record layer failure" in str(error)
        reason = "the server does not speak TLS; connect without TLS" if plaintext else f"TLS handshake failed: {error}"
    except OSError as error:  # reset, closed, or the connect timeout passed during the handshake
        reason = f"TLS handshake failed: {error}"
    sock.close()
    raise error_for_status(env.UNAVAILABLE, f"TLS connection to {peer} failed: {reason}")
