"""A minimal ONNX protobuf writer: enough to serialise a small graph for ONNX Runtime without `onnx`.

runtime/ depends on numpy + onnxruntime only; `onnx` is a build-time (export) dependency. ONNX
Runtime needs nothing but the serialised ModelProto, and the few messages a one-node graph uses
are plain protobuf (field numbers from onnx/onnx.proto3). The large initializer is not copied
through Python bytes objects: ``model_bytes`` returns the buffer and the byte offset of that
tensor's ``raw_data``, so the caller writes it in place (see runtime/search/int8.py).
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["DTYPES", "attr_int", "attr_ints", "model_bytes", "node", "tensor", "value_info"]

# TensorProto.DataType
DTYPES = {"float32": 1, "uint8": 2, "int8": 3, "int32": 6, "int64": 7, "bool": 9, "float16": 10, "float64": 11}
_LEN, _VARINT = 2, 0  # protobuf wire types


def _varint(v: int) -> bytes:
    if v < 0:
        v += 1 << 64  # int64 fields: two's complement, 10 bytes
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _key(field: int, wire: int) -> bytes:
    return _varint(field << 3 | wire)


def _int(field: int, v: int) -> bytes:
    return _key(field, _VARINT) + _varint(v)


def _len_header(field: int, n: int) -> bytes:
    return _key(field, _LEN) + _varint(n)


def _msg(field: int, payload: bytes) -> bytes:
    return _len_header(field, len(payload)) + payload


def _str(field: int, s: str) -> bytes:
    return _msg(field, s.encode())


def attr_int(name: str, v: int) -> bytes:
    """AttributeProto{name=1, i=3, type=20 (INT=2)}."""
    return _str(1, name) + _int(3, v) + _int(20, 2)


def attr_ints(name: str, values: Sequence[int]) -> bytes:
    """AttributeProto{name=1, ints=8, type=20 (INTS=7)}."""
    return _str(1, name) + b"".join(_int(8, v) for v in values) + _int(20, 7)


def node(op_type: str, inputs: Sequence[str], outputs: Sequence[str], name: str = "",
         attributes: Sequence[bytes] = ()) -> bytes:
    """NodeProto{input=1, output=2, name=3, op_type=4, attribute=5} (default domain)."""
    body = b"".join(_str(1, i) for i in inputs) + b"".join(_str(2, o) for o in outputs)
    body += _str(3, name or outputs[0]) + _str(4, op_type)
    return body + b"".join(_msg(5, a) for a in attributes)


def tensor(name: str, dtype: str, dims: Sequence[int], raw: bytes) -> bytes:
    """TensorProto{dims=1, data_type=2, name=8, raw_data=9} (raw_data little-endian)."""
    return _tensor_head(name, dtype, dims) + _msg(9, raw)


def _tensor_head(name: str, dtype: str, dims: Sequence[int]) -> bytes:
    return b"".join(_int(1, d) for d in dims) + _int(2, DTYPES[dtype]) + _str(8, name)


def value_info(name: str, dtype: str, shape: Sequence[int | str]) -> bytes:
    """ValueInfoProto{name=1, type=2: TypeProto{tensor_type=1: {elem_type=1, shape=2: {dim=1}}}}."""
    dims = b"".join(_msg(1, _int(1, d) if isinstance(d, int) else _str(2, d)) for d in shape)
    tensor_type = _int(1, DTYPES[dtype]) + _msg(2, dims)
    return _str(1, name) + _msg(2, _msg(1, tensor_type))


def model_bytes(nodes: Sequence[bytes], inputs: Sequence[bytes], outputs: Sequence[bytes],
                initializers: Sequence[bytes], big: tuple[str, str, Sequence[int], int] | None = None,
                opset: int = 17, graph_name: str = "g") -> tuple[bytearray, int]:
    """ModelProto bytes and the offset of the ``big`` initializer's raw data (-1 without one).

    ``big`` = (name, dtype, dims, nbytes): a tensor whose raw_data is left zeroed for the caller
    to fill in place, so a gallery-sized blob exists once, in the returned buffer.
    """
    graph_head = b"".join(_msg(1, n) for n in nodes) + _str(2, graph_name)
    graph_head += b"".join(_msg(5, t) for t in initializers)
    graph_tail = b"".join(_msg(11, v) for v in inputs) + b"".join(_msg(12, v) for v in outputs)
    big_head, nbytes = b"", 0
    if big is not None:
        name, dtype, dims, nbytes = big
        inner = _tensor_head(name, dtype, dims) + _len_header(9, nbytes)  # TensorProto up to its raw bytes
        big_head = _len_header(5, len(inner) + nbytes) + inner
    graph_len = len(graph_head) + len(big_head) + nbytes + len(graph_tail)
    # ModelProto{ir_version=1, producer_name=2, graph=7, opset_import=8: {domain=1, version=2}}
    head = _int(1, 8) + _str(2, "irreid-edge") + _msg(8, _str(1, "") + _int(2, opset))
    head += _len_header(7, graph_len) + graph_head + big_head
    buf = bytearray(len(head) + nbytes + len(graph_tail))
    buf[:len(head)] = head
    buf[len(head) + nbytes:] = graph_tail
    return buf, (len(head) if big is not None else -1)
