"""Test fixture: a minimal RTSP server streaming Motion-JPEG over RTP, interleaved on the RTSP TCP connection.

Enough of RTSP (RFC 2326) and the JPEG RTP payload (RFC 2435) for FFmpeg's client (what OpenCV's
`VideoCapture` uses) to play it: OPTIONS, DESCRIBE (SDP), SETUP (TCP interleaved only; a UDP request gets
"461 Unsupported Transport", after which FFmpeg retries over TCP), PLAY, GET_PARAMETER, TEARDOWN. Frames
are encoded with `cv2.imencode` (baseline, 4:2:0, standard Huffman tables, no restart markers — the
layout RFC 2435 type 1 describes) and sent with their quantisation tables in-band (Q = 255).

`RtspServer(frames, port=0).start()` serves `rtsp://127.0.0.1:PORT/stream` until `stop()`, which closes
the listening socket and every client connection (a camera going away); `start()` again on the same
port brings it back. Everything stays on the loopback interface and stops by itself with the test.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Callable

import cv2
import numpy as np

PAYLOAD_TYPE = 26  # JPEG, RFC 3551
CLOCK = 90_000
MTU_PAYLOAD = 1400


def jpeg_parts(jpeg: bytes) -> tuple[bytes, bytes]:
    """Quantisation tables (luma + chroma, 128 bytes) and entropy-coded scan data of a baseline JPEG."""
    tables: list[bytes] = []
    i = 2  # after SOI
    while i < len(jpeg):
        if jpeg[i] != 0xFF:
            raise ValueError(f"bad JPEG marker at {i}")
        marker = jpeg[i + 1]
        length = struct.unpack(">H", jpeg[i + 2 : i + 4])[0]
        segment = jpeg[i + 4 : i + 2 + length]
        if marker == 0xDB:  # DQT: one or more (Pq/Tq, 64 bytes) tables
            for k in range(0, len(segment), 65):
                tables.append(segment[k + 1 : k + 65])
        if marker == 0xDA:  # SOS: the scan follows its header
            scan = jpeg[i + 2 + length :]
            if scan.endswith(b"\xff\xd9"):
                scan = scan[:-2]
            return b"".join(tables[:2]), scan
        i += 2 + length
    raise ValueError("no SOS marker in JPEG")


def rtp_jpeg_packets(frame: np.ndarray, seq: int, timestamp: int, ssrc: int = 0x1234ABCD) -> list[bytes]:
    """RTP packets (RFC 2435, type 1, Q 255) carrying one BGR frame (size a multiple of 8)."""
    height, width = frame.shape[:2]
    ok, encoded = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 80])
    assert ok
    tables, scan = jpeg_parts(encoded.tobytes())
    packets = []
    offset = 0
    while offset < len(scan):
        chunk = scan[offset : offset + MTU_PAYLOAD]
        header = struct.pack(">I", offset & 0xFFFFFF) + bytes([1, 255, width // 8, height // 8])
        if offset == 0:
            header += bytes([0, 0]) + struct.pack(">H", len(tables)) + tables
        last = offset + len(chunk) >= len(scan)
        rtp = struct.pack(
            ">BBHII", 0x80, (0x80 if last else 0) | PAYLOAD_TYPE, seq & 0xFFFF, timestamp & 0xFFFFFFFF, ssrc
        )
        packets.append(rtp + header + chunk)
        seq += 1
        offset += len(chunk)
    return packets


class RtspServer:
    """Serve frames from `frames(index)` at `fps` to every client over RTSP on 127.0.0.1.

    Args:
        frames: index → BGR uint8 frame (width and height multiples of 8).
        fps: frame rate.
        port: TCP port; 0 picks a free one (kept across `stop()` / `start()`).
    """

    def __init__(self, frames: Callable[[int], np.ndarray], fps: float = 15.0, port: int = 0) -> None:
        self.frames = frames
        self.fps = fps
        self.port = port
        self._listener: socket.socket | None = None
        self._clients: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._running = threading.Event()
        self.sessions = 0  # PLAY requests served so far

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}/stream"

    def start(self) -> RtspServer:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(4)
        listener.settimeout(0.2)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._running.set()
        self._spawn(self._accept_loop)
        return self

    def stop(self) -> None:
        """Close the listener and every client connection (the camera goes away)."""
        self._running.clear()
        with self._lock:
            sockets = [self._listener, *self._clients] if self._listener else list(self._clients)
            self._clients.clear()
            self._listener = None
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads.clear()

    def __enter__(self) -> RtspServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ----- internals ----------------------------------------------------------------------------
    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        while self._running.is_set():
            listener = self._listener
            if listener is None:
                return
            try:
                conn, _ = listener.accept()
            except (TimeoutError, OSError):
                continue
            with self._lock:
                self._clients.append(conn)
            self._spawn(self._serve, conn)

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(0.2)
        buffer = b""
        playing = threading.Event()
        try:
            while self._running.is_set():
                try:
                    data = conn.recv(65536)
                except TimeoutError:
                    continue
                if not data:
                    return
                buffer += data
                buffer = self._handle_requests(conn, buffer, playing)
        except OSError:
            return
        finally:
            playing.clear()
            with contextlib.suppress(OSError):
                conn.close()

    def _handle_requests(self, conn: socket.socket, buffer: bytes, playing: threading.Event) -> bytes:
        while buffer:
            if buffer[:1] == b"$":  # interleaved RTCP from the client: skip it
                if len(buffer) < 4:
                    return buffer
                size = struct.unpack(">H", buffer[2:4])[0]
                if len(buffer) < 4 + size:
                    return buffer
                buffer = buffer[4 + size :]
                continue
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return buffer
            head, buffer = buffer[:end].decode("latin-1"), buffer[end + 4 :]
            lines = head.split("\r\n")
            headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
            length = int(headers.get("content-length", 0))
            buffer = buffer[length:]
            self._respond(conn, lines[0].split()[0], headers, playing)
        return buffer

    def _respond(
        self, conn: socket.socket, method: str, headers: dict[str, str], playing: threading.Event
    ) -> None:
        cseq = headers.get("cseq", "0")
        extra, body, status = "", "", "200 OK"
        if method == "OPTIONS":
            extra = "Public: OPTIONS, DESCRIBE, SETUP, PLAY, GET_PARAMETER, TEARDOWN\r\n"
        elif method == "DESCRIBE":
            body = (
                "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=vireid test\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\n"
                f"m=video 0 RTP/AVP {PAYLOAD_TYPE}\r\na=control:track0\r\n"
            )
            extra = f"Content-Base: {self.url}/\r\nContent-Type: application/sdp\r\n"
        elif method == "SETUP":
            if "TCP" not in headers.get("transport", "").upper():
                status = "461 Unsupported Transport"
            else:
                extra = "Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\nSession: 12345678\r\n"
        elif method == "PLAY":
            extra = "Session: 12345678\r\n"
        elif method == "TEARDOWN":
            playing.clear()
        reply = f"RTSP/1.0 {status}\r\nCSeq: {cseq}\r\n{extra}Content-Length: {len(body)}\r\n\r\n{body}"
        conn.sendall(reply.encode("latin-1"))
        if method == "PLAY" and not playing.is_set():
            playing.set()
            self.sessions += 1
            self._spawn(self._stream, conn, playing)

    def _stream(self, conn: socket.socket, playing: threading.Event) -> None:
        seq, index, start = 0, 0, time.monotonic()
        while playing.is_set() and self._running.is_set():
            packets = rtp_jpeg_packets(self.frames(index), seq, int(index * CLOCK / self.fps))
            seq += len(packets)
            try:
                for packet in packets:
                    conn.sendall(b"$\x00" + struct.pack(">H", len(packet)) + packet)
            except OSError:
                return
            index += 1
            delay = start + index / self.fps - time.monotonic()
            if delay > 0:
                time.sleep(delay)
