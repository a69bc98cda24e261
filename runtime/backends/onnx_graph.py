"""The image input of an ONNX file (name and shape), read from the protobuf without the `onnx` package.

ONNX Runtime's TensorRT provider takes its optimisation profile as provider options, before the
session exists, keyed by the input's name ("images:1x3x288x144"): the name and the static C, H, W
must be known from the file itself. runtime/ does not depend on `onnx` (shared/DESIGN.md), so this
walks the few messages involved (field numbers from onnx/onnx.proto3) over a memory map, skipping
every other field by its length: the weights are never copied.

    ModelProto.graph = 7; GraphProto.initializer = 5, input = 11; TensorProto.name = 8;
    ValueInfoProto.name = 1, type = 2; TypeProto.tensor_type = 1; TypeProto.Tensor.shape = 2;
    TensorShapeProto.dim = 1; Dimension.dim_value = 1 (dim_param = 2: symbolic, reported as -1)
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterator
from pathlib import Path

__all__ = ["graph_input"]

_VARINT, _FIXED64, _LEN, _FIXED32 = 0, 1, 2, 5


def _varint(buf: mmap.mmap | bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7


def _fields(buf: mmap.mmap | bytes, start: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """(field number, wire type, value or payload start, payload end) for each field in [start, end)."""
    pos = start
    while pos < end:
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == _VARINT:
            value, pos = _varint(buf, pos)
            yield field, wire, value, pos
        elif wire == _LEN:
            n, pos = _varint(buf, pos)
            if pos + n > end:
                raise ValueError("field runs past its message")
            yield field, wire, pos, pos + n
            pos += n
        elif wire in (_FIXED64, _FIXED32):
            pos += 8 if wire == _FIXED64 else 4
        else:
            raise ValueError(f"wire type {wire} is not used by ONNX")


def _submessage(buf: mmap.mmap | bytes, start: int, end: int, field: int) -> tuple[int, int] | None:
    for f, wire, a, b in _fields(buf, start, end):
        if f == field and wire == _LEN:
            return a, b
    return None


def _string(buf: mmap.mmap | bytes, start: int, end: int, field: int) -> str | None:
    span = _submessage(buf, start, end, field)
    return bytes(buf[span[0]:span[1]]).decode("utf-8", "replace") if span else None


def _shape(buf: mmap.mmap | bytes, start: int, end: int) -> tuple[int, ...]:
    """ValueInfoProto -> its tensor shape; -1 for a symbolic or missing dimension."""
    span = _submessage(buf, start, end, 2)                     # type
    span = span and _submessage(buf, *span, 1)                 # tensor_type
    span = span and _submessage(buf, *span, 2)                 # shape
    if not span:
        return ()
    dims = []
    for f, wire, a, b in _fields(buf, *span):
        if f == 1 and wire == _LEN:                            # dim
            value = next((v for g, w, v, _ in _fields(buf, a, b) if g == 1 and w == _VARINT), None)
            dims.append(int(value) if value is not None else -1)
    return tuple(dims)


def graph_input(path: str | os.PathLike[str]) -> tuple[str, tuple[int, ...]] | None:
    """(name, shape) of the graph's first input that is not an initializer (older exporters list
    weights as inputs too), or None when the file is not an ONNX model this walker can read."""
    try:
        with open(Path(path), "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            graph = _submessage(buf, 0, len(buf), 7)
            if graph is None:
                return None
            weights: set[str | None] = set()
            inputs: list[tuple[int, int]] = []
            for field, wire, a, b in _fields(buf, *graph):
                if field == 5 and wire == _LEN:
                    weights.add(_string(buf, a, b, 8))
                elif field == 11 and wire == _LEN:
                    inputs.append((a, b))
            for a, b in inputs:
                name = _string(buf, a, b, 1)
                if name is not None and name not in weights:
                    return name, _shape(buf, a, b)
    except (OSError, ValueError):
        return None
    return None
