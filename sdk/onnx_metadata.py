"""Read `metadata_props` from an ONNX file without the `onnx` package.

The runtime must not import `onnx` (it is heavy and pulls protobuf), yet it needs the model card before
it opens a session: to choose a device, size buffers and refuse a wrong artifact early. An ONNX file is
a protobuf `ModelProto`; its metadata sits in top-level field 14 as `StringStringEntryProto` messages
(key = field 1, value = field 2). Walking the top-level wire format and skipping every other field
(the graph included) costs a few microseconds and needs no schema.
"""

from __future__ import annotations

import mmap
from pathlib import Path

from .errors import ArtifactError

_METADATA_FIELD = 14
_WIRE_VARINT, _WIRE_I64, _WIRE_LEN, _WIRE_I32 = 0, 1, 2, 5


def _varint(buf: memoryview | bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _fields(buf: memoryview | bytes):
    """Yield `(field_number, wire_type, value)`; LEN values are memoryview slices."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        value: int | memoryview | bytes
        if wire == _WIRE_VARINT:
            value, pos = _varint(buf, pos)
        elif wire == _WIRE_I64:
            value, pos = buf[pos : pos + 8], pos + 8
        elif wire == _WIRE_I32:
            value, pos = buf[pos : pos + 4], pos + 4
        elif wire == _WIRE_LEN:
            length, pos = _varint(buf, pos)
            value, pos = buf[pos : pos + length], pos + length
        else:
            raise ValueError(f"unsupported wire type {wire}")
        if pos > end or field == 0:
            raise ValueError("truncated or malformed message")
        yield field, wire, value


def parse_metadata(data: bytes | memoryview) -> dict[str, str]:
    """Return the `metadata_props` of a serialised ONNX `ModelProto` as a dict."""
    props: dict[str, str] = {}
    for field, wire, value in _fields(memoryview(data)):
        if field != _METADATA_FIELD or wire != _WIRE_LEN:
            continue
        entry = {f: bytes(v).decode("utf-8") for f, w, v in _fields(value) if w == _WIRE_LEN}
        props[entry.get(1, "")] = entry.get(2, "")
    return props


def read_onnx_metadata(path: str | Path) -> dict[str, str]:
    """Read the `metadata_props` of the ONNX file at `path` (memory-mapped, graph never decoded).

    Raises:
        ArtifactError: the file is missing, empty or not a readable ONNX protobuf.
    """
    path = Path(path)
    if path.is_dir():
        raise ArtifactError(f"{path}: is a folder; pass the path of an exported .onnx model inside it")
    if not path.is_file():
        raise ArtifactError(f"{path}: no such ONNX file; pass the path of an exported .onnx model")
    if path.stat().st_size == 0:
        raise ArtifactError(f"{path}: file is empty; re-export the model with `vireid export`")
    with path.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        props, problem = _parse_mapped(mm)
    if problem is not None:
        raise ArtifactError(
            f"{path}: not a readable ONNX model ({problem}); the file may be truncated or not ONNX. "
            "Re-export it with `vireid export`."
        )
    return props


def _parse_mapped(mm: mmap.mmap) -> tuple[dict[str, str], str | None]:
    """Parse a mapped file, returning the problem as text so no view outlives the mapping."""
    view = memoryview(mm)
    try:
        return parse_metadata(view), None
    except (ValueError, UnicodeDecodeError) as exc:
        return {}, str(exc)
    finally:
        view.release()
