"""G.711 µ-law (PCMU) and A-law (PCMA) by numpy table lookup, batched across streams.

The tables are built once at import from the ITU-T G.711 companding rules (Table 1 A-law,
Table 2 µ-law): 8 segments of 16 steps, µ-law with a bias of 33 on the 14-bit magnitude and
all bits inverted, A-law on the 13-bit magnitude with the even bits inverted (XOR 0x55).
Linear samples are 16-bit: µ-law takes the top 14 bits, A-law the top 13, exactly as
Python's former ``audioop`` (``lin2ulaw``/``lin2alaw`` width 2), which the tests check over
every input.

Encoding indexes a 65536-entry table with the int16 samples viewed as uint16 (one lookup, no
arithmetic).  Decoding looks up two codes at once: the uint8 codes are viewed as uint16 pairs
and index a 65536-entry table of int16 pairs, half the lookups of a 256-entry table.

Every function accepts 1-D frames or 2-D ``[streams, samples]`` batches and keeps the shape.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import numpy.typing as npt

#: Static RTP payload types (RFC 3551 §6, Table 4).
PCMU = 0
PCMA = 8

Int16Array = npt.NDArray[np.int16]
UInt8Array = npt.NDArray[np.uint8]
Codes = bytes | bytearray | memoryview | UInt8Array
_T = TypeVar("_T", bound=np.generic)


class G711Error(ValueError):
    """Input of the wrong type, or a payload type that is not G.711."""


def _readonly(table: npt.NDArray[_T]) -> npt.NDArray[_T]:
    table.flags.writeable = False
    return table


def _ulaw_decode_table() -> Int16Array:
    """G.711 Table 2 µ-law decoder outputs, scaled by 4 to 16 bits (-32124..32124)."""
    code = ~np.arange(256, dtype=np.int32) & 0xFF
    exponent = (code >> 4) & 0x07
    biased = (((code & 0x0F) << 3) + 0x84) << exponent
    return np.where(code & 0x80, 0x84 - biased, biased - 0x84).astype(np.int16)


def _alaw_decode_table() -> Int16Array:
    """G.711 Table 1 A-law decoder outputs, scaled by 8 to 16 bits (-32256..32256)."""
    code = np.arange(256, dtype=np.int32) ^ 0x55
    exponent = (code >> 4) & 0x07
    mantissa = (code & 0x0F) << 4
    # Segment 0 has no implied leading one; every other segment adds it (0x100) before
    # shifting.  The "+ 8" is half a step: outputs sit mid-interval.
    magnitude = np.where(
        exponent == 0, mantissa + 8, (mantissa + 0x108) << np.maximum(exponent - 1, 0)
    )
    return np.where(code & 0x80, magnitude, -magnitude).astype(np.int16)


def _segment(magnitude: npt.NDArray[np.int32], first_end: int) -> npt.NDArray[np.int32]:
    """Segment number 0..8 of ``magnitude``: segment k ends at ``((first_end + 1) << k) - 1``."""
    ends = ((first_end + 1) << np.arange(8)) - 1
    return np.searchsorted(ends, magnitude, side="left").astype(np.int32)


def _ulaw_encode_table() -> UInt8Array:
    """µ-law code for every int16 sample, indexed by the sample viewed as uint16."""
    sample = np.arange(65536, dtype=np.uint16).view(np.int16).astype(np.int32)
    value = sample >> 2  # 14-bit input
    magnitude = np.minimum(np.abs(value), 8159) + 33  # clip at full scale, add the bias
    segment = _segment(magnitude, 0x3F)
    code = np.where(segment >= 8, 0x7F, (segment << 4) | ((magnitude >> (segment + 1)) & 0x0F))
    return (code ^ np.where(value < 0, 0x7F, 0xFF)).astype(np.uint8)


def _alaw_encode_table() -> UInt8Array:
    """A-law code for every int16 sample, indexed by the sample viewed as uint16."""
    sample = np.arange(65536, dtype=np.uint16).view(np.int16).astype(np.int32)
    value = sample >> 3  # 13-bit input
    # Negative values use the one's complement: -1 maps to magnitude 0, like +0.
    magnitude = np.where(value < 0, ~value, value)
    segment = _segment(magnitude, 0x1F)
    code = (segment << 4) | ((magnitude >> np.maximum(segment, 1)) & 0x0F)
    return (code ^ np.where(value < 0, 0x55, 0xD5)).astype(np.uint8)


def _pair_table(table: npt.NDArray[np.int16] | UInt8Array) -> npt.NDArray[np.generic]:
    """Map every pair of codes, read as one native uint16, to both outputs at once."""
    wide = {np.dtype(np.int16): np.int32, np.dtype(np.uint8): np.uint16}[table.dtype]
    pairs = np.arange(65536, dtype=np.uint16).view(np.uint8).reshape(65536, 2)
    out = np.empty((65536, 2), dtype=table.dtype)
    out[pairs.view(np.uint16).ravel()] = table[pairs]
    return _readonly(out.view(wide).ravel())


ULAW_DECODE = _readonly(_ulaw_decode_table())
ALAW_DECODE = _readonly(_alaw_decode_table())
ULAW_ENCODE = _readonly(_ulaw_encode_table())
ALAW_ENCODE = _readonly(_alaw_encode_table())
#: Direct transcoding, code to code: each code decoded and re-encoded, so a transcoding relay
#: and the decode/encode audio path produce the same bytes.  G.711's own conversion tables
#: (Tables 3 and 4) differ from these by one step for some codes near segment edges.
ULAW_TO_ALAW = _readonly(ALAW_ENCODE[ULAW_DECODE.view(np.uint16)])
ALAW_TO_ULAW = _readonly(ULAW_ENCODE[ALAW_DECODE.view(np.uint16)])

_ULAW_DECODE_PAIRS = _pair_table(ULAW_DECODE)
_ALAW_DECODE_PAIRS = _pair_table(ALAW_DECODE)
_ULAW_TO_ALAW_PAIRS = _pair_table(ULAW_TO_ALAW)
_ALAW_TO_ULAW_PAIRS = _pair_table(ALAW_TO_ULAW)


def _codes(data: Codes) -> UInt8Array:
    if isinstance(data, np.ndarray):
        if data.dtype != np.uint8:
            raise G711Error(f"G.711 codes must be uint8, got {data.dtype}")
        return data
    return np.frombuffer(data, dtype=np.uint8)


def _lookup(data: Codes, table: npt.NDArray[_T], pairs: npt.NDArray[np.generic]) -> npt.NDArray[_T]:
    codes = _codes(data)
    if codes.ndim and codes.shape[-1] % 2 == 0 and codes.flags.c_contiguous:
        return np.take(pairs, codes.view(np.uint16)).view(table.dtype)
    return np.take(table, codes)


def _encode(pcm: Int16Array, table: UInt8Array) -> UInt8Array:
    if not isinstance(pcm, np.ndarray) or pcm.dtype != np.int16:
        raise G711Error("G.711 encoders take int16 PCM arrays")
    return np.take(table, pcm.view(np.uint16))


def ulaw_decode(data: Codes) -> Int16Array:
    """Decode µ-law codes (bytes, or a uint8 array of any shape) to int16 PCM."""
    return _lookup(data, ULAW_DECODE, _ULAW_DECODE_PAIRS)


def alaw_decode(data: Codes) -> Int16Array:
    """Decode A-law codes (bytes, or a uint8 array of any shape) to int16 PCM."""
    return _lookup(data, ALAW_DECODE, _ALAW_DECODE_PAIRS)


def ulaw_encode(pcm: Int16Array) -> UInt8Array:
    """Encode int16 PCM of any shape to µ-law codes of the same shape."""
    return _encode(pcm, ULAW_ENCODE)


def alaw_encode(pcm: Int16Array) -> UInt8Array:
    """Encode int16 PCM of any shape to A-law codes of the same shape."""
    return _encode(pcm, ALAW_ENCODE)


def transcode_ulaw_to_alaw(data: Codes) -> UInt8Array:
    """Convert µ-law codes straight to A-law codes (same as decoding and re-encoding)."""
    return _lookup(data, ULAW_TO_ALAW, _ULAW_TO_ALAW_PAIRS)


def transcode_alaw_to_ulaw(data: Codes) -> UInt8Array:
    """Convert A-law codes straight to µ-law codes (same as decoding and re-encoding)."""
    return _lookup(data, ALAW_TO_ULAW, _ALAW_TO_ULAW_PAIRS)


def decode(payload_type: int, data: Codes) -> Int16Array:
    """Decode a PCMU (0) or PCMA (8) payload (RFC 3551 §4.5.14)."""
    if payload_type == PCMU:
        return ulaw_decode(data)
    if payload_type == PCMA:
        return alaw_decode(data)
    raise G711Error(f"payload type {payload_type} is not G.711 (PCMU=0, PCMA=8)")


def encode(payload_type: int, pcm: Int16Array) -> UInt8Array:
    """Encode int16 PCM as a PCMU (0) or PCMA (8) payload (RFC 3551 §4.5.14)."""
    if payload_type == PCMU:
        return ulaw_encode(pcm)
    if payload_type == PCMA:
        return alaw_encode(pcm)
    raise G711Error(f"payload type {payload_type} is not G.711 (PCMU=0, PCMA=8)")
