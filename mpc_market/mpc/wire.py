"""A small, closed serialization for everything the market nodes send each other.

MPyC serializes ``mpc.transfer`` payloads and numpy share arrays with ``pickle``, which runs
code chosen by the sender when the receiver loads it. This codec replaces it (installed by
mpc_market.mpc.mpyc_internals): it encodes only None, bools, integers, bytes, strings, lists,
tuples and numpy arrays (of integer dtypes, or object arrays of integers, the share format)
and decodes nothing else. Decoding checks every length against the bytes at hand and a nesting
bound, and spends one element budget of len(message) across the whole decode (every list or
tuple item and every array element costs one, and every array element needs at least one byte),
so a malformed message raises WireError before anything is allocated for elements it does not
hold (the densest well-formed messages the tests build decode in under 64 bytes per byte
received); it cannot construct any other type.
"""

import itertools
import struct
from typing import Any, SupportsInt, cast

import numpy as np

from ..common.errors import Malformed

__all__ = ['WireError', 'dumps', 'loads']

MAX_DEPTH = 16
MAX_INT_BYTES = 1 << 16          # field elements are 16 bytes; nothing legitimate comes close
_NUMERIC: dict[bytes, np.dtype] = {
    b'u1': np.dtype(np.uint8), b'i1': np.dtype(np.int8), b'u2': np.dtype('<u2'), b'i2': np.dtype('<i2'),
    b'u4': np.dtype('<u4'), b'i4': np.dtype('<i4'), b'u8': np.dtype('<u8'), b'i8': np.dtype('<i8'),
    b'b1': np.dtype(np.bool_)}
_CODE_OF = {np.dtype(v): k for k, v in _NUMERIC.items()}
_M64 = (1 << 64) - 1

NONE, FALSE, TRUE, INT, BYTES, STR, LIST, TUPLE, ARRAY, INTARRAY = range(10)


class WireError(Malformed, ValueError):
    """A message that is not a well-formed encoding of an allowed value (still a ValueError, as it was)."""


def dumps(obj: object) -> bytes:
    """The closed encoding of obj (see the module docstring for the types allowed).

    Raises:
        WireError: obj is or contains a type the codec does not send, or nests too deep.
    """
    out: list[bytes] = []
    _encode(obj, out, 0)
    return b''.join(out)


def _encode(obj: object, out: list[bytes], depth: int) -> None:
    if depth > MAX_DEPTH:
        raise WireError('nesting too deep')
    if obj is None:
        out.append(bytes((NONE,)))
    elif obj is True or obj is False or isinstance(obj, np.bool_):
        out.append(bytes((TRUE if obj else FALSE,)))
    elif isinstance(obj, (int, np.integer)) or type(obj).__name__ == 'mpz':
        out.append(bytes((INT,)) + _int_bytes(int(cast(SupportsInt, obj))))  # an mpz has no type information
    elif isinstance(obj, (bytes, bytearray, memoryview)):
        data = bytes(obj)
        out.append(struct.pack('<BI', BYTES, len(data)) + data)
    elif isinstance(obj, str):
        data = obj.encode()
        out.append(struct.pack('<BI', STR, len(data)) + data)
    elif isinstance(obj, (list, tuple)):
        out.append(struct.pack('<BI', LIST if isinstance(obj, list) else TUPLE, len(obj)))
        for item in obj:
            _encode(item, out, depth + 1)
    elif isinstance(obj, np.ndarray):
        _encode_array(obj, out)
    elif hasattr(obj, 'value') and type(obj).__module__.startswith('mpyc'):  # a field element or array
        _encode(obj.value, out, depth)
    else:
        raise WireError(f'cannot send a {type(obj).__name__}')


def _int_bytes(value: int) -> bytes:
    magnitude = abs(value)
    data = magnitude.to_bytes((magnitude.bit_length() + 7) // 8, 'little')
    if len(data) > MAX_INT_BYTES:
        raise WireError('integer too large')
    return struct.pack('<BI', value < 0, len(data)) + data


def _shape_header(tag: int, code: bytes, shape: tuple[int, ...]) -> bytes:
    return struct.pack(f'<B2sB{len(shape)}Q', tag, code, len(shape), *shape)


def _encode_array(array: np.ndarray, out: list[bytes]) -> None:
    if array.dtype != object:
        code = _CODE_OF.get(array.dtype.newbyteorder('<') if array.dtype.byteorder == '>' else array.dtype)
        if code is None:
            raise WireError(f'cannot send an array of {array.dtype}')
        out.append(_shape_header(ARRAY, code, array.shape)
                   + np.ascontiguousarray(array, dtype=_NUMERIC[code]).tobytes())
        return
    flat = array.reshape(-1)
    values = flat.tolist()
    low, high = (min(values), max(values)) if values else (0, 0)
    signed = low < 0
    magnitudes = np.abs(flat) if signed else flat
    bits = max(-low, high).bit_length()
    if bits <= 64:  # one machine word: the narrowest of 1, 2, 4, 8 bytes
        width = next(w for w in (1, 2, 4, 8) if bits <= 8 * w)
        body = np.asarray(magnitudes).astype(f'<u{width}').tobytes()
    else:  # 8 bytes per 64-bit limb, least significant first, element after element
        limbs = (bits + 63) // 64
        width = 8 * limbs
        if width > MAX_INT_BYTES:
            raise WireError('integer too large')
        columns = np.empty((flat.size, limbs), dtype='<u8')
        rest = magnitudes
        for k in range(limbs - 1):
            columns[:, k] = (rest & _M64).astype(np.uint64)
            rest = rest >> 64
        columns[:, limbs - 1] = rest.astype(np.uint64)
        body = columns.tobytes()
    out.append(_shape_header(INTARRAY, b'ob', array.shape) + struct.pack('<HB', width, signed))
    if signed:
        out.append(np.packbits(flat < 0).tobytes())
    out.append(body)


def loads(data: bytes) -> object:
    """The value encoded in data.

    Args:
        data: one message, as dumps wrote it.

    Returns:
        None, a bool, an int, bytes, a str, a list or tuple of these, or a numpy array.

    Raises:
        WireError: data is not exactly one well-formed encoding, or claims more elements than
            it has bytes.
    """
    reader = _Reader(bytes(data))
    value = reader.value(0)
    if reader.pos != len(reader.data):
        raise WireError('trailing bytes')
    return value


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0
        self.budget = len(data)  # elements left for the whole message, nested containers included

    def spend(self, elements: int) -> None:
        """Charge elements to the one budget before anything is allocated for them."""
        if elements > self.budget:
            raise WireError('more elements than the message has bytes')
        self.budget -= elements

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise WireError('truncated message')
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def unpack(self, fmt: str) -> tuple[Any, ...]:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))

    def value(self, depth: int) -> object:
        if depth > MAX_DEPTH:
            raise WireError('nesting too deep')
        (tag,) = self.unpack('<B')
        if tag == NONE:
            return None
        if tag in (FALSE, TRUE):
            return tag == TRUE
        if tag == INT:
            negative, size = self.unpack('<BI')
            if negative > 1 or size > MAX_INT_BYTES:
                raise WireError('malformed integer')
            magnitude = int.from_bytes(self.take(size), 'little')
            return -magnitude if negative else magnitude
        if tag in (BYTES, STR):
            (size,) = self.unpack('<I')
            raw = self.take(size)
            if tag == BYTES:
                return raw
            try:
                return raw.decode()
            except UnicodeDecodeError:
                raise WireError('malformed string') from None
        if tag in (LIST, TUPLE):
            (count,) = self.unpack('<I')
            if count > len(self.data) - self.pos:  # every item takes at least one byte
                raise WireError('truncated message')
            self.spend(count)
            items = [self.value(depth + 1) for _ in range(count)]
            return items if tag == LIST else tuple(items)
        if tag in (ARRAY, INTARRAY):
            return self.array(tag)
        raise WireError(f'unknown tag {tag}')

    def array(self, tag: int) -> np.ndarray:
        code, ndim = self.unpack('<2sB')
        if ndim > 8:
            raise WireError('too many dimensions')
        shape = self.unpack(f'<{ndim}Q')
        if any(n > len(self.data) for n in shape):
            raise WireError('truncated message')
        size = 1
        for n in shape:
            size *= n
        self.spend(size)
        if tag == ARRAY:
            dtype = _NUMERIC.get(code)
            if dtype is None:
                raise WireError('unknown array type')
            dtype = np.dtype(dtype)
            return np.frombuffer(self.take(size * dtype.itemsize), dtype=dtype).reshape(shape).copy()
        if code != b'ob':
            raise WireError('unknown array type')
        width, signed = self.unpack('<HB')
        # width 0 would let a few header bytes stand for any number of zeros; dumps never writes it
        if not 0 < width <= MAX_INT_BYTES or signed > 1 or not (width in (1, 2, 4) or width % 8 == 0):
            raise WireError('malformed integer array')
        negative = None
        if signed:
            negative = np.unpackbits(np.frombuffer(self.take((size + 7) // 8), dtype=np.uint8))[:size].astype(bool)
        raw = self.take(width * size)
        values = np.empty(size, dtype=object)
        if width <= 8:
            values[:] = np.frombuffer(raw, dtype=f'<u{width}').astype(object)
        else:  # C-level split into elements, one int.from_bytes each
            values[:] = list(map(int.from_bytes, np.frombuffer(raw, dtype=f'V{width}').tolist(),  # type: ignore[arg-type]
                                 itertools.repeat('little')))  # mypy cannot see 'little' as the byteorder Literal
        if negative is not None and negative.any():
            values = np.where(negative, -values, values)
        return values.reshape(shape)
