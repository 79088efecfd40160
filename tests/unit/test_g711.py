"""G.711 µ-law/A-law tables: bit-exact against audioop over every input, batched shapes."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pytest

from media import g711

with warnings.catch_warnings():
    # audioop is the oracle only (deprecated in 3.11, gone in 3.13).
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

ALL_PCM = np.arange(-32768, 32768, dtype=np.int16)
ALL_CODES = np.arange(256, dtype=np.uint8)
RNG = np.random.default_rng(4733)

Encoder = Callable[[npt.NDArray[np.int16]], npt.NDArray[np.uint8]]
Decoder = Callable[[g711.Codes], npt.NDArray[np.int16]]
LAWS: list[tuple[str, Encoder, Decoder, int]] = [
    ("ulaw", g711.ulaw_encode, g711.ulaw_decode, g711.PCMU),
    ("alaw", g711.alaw_encode, g711.alaw_decode, g711.PCMA),
]
LAW_IDS = [law[0] for law in LAWS]


def oracle_encode(law: str, pcm: npt.NDArray[np.int16]) -> bytes:
    convert = audioop.lin2ulaw if law == "ulaw" else audioop.lin2alaw
    return convert(pcm.astype("<i2").tobytes(), 2)


def oracle_decode(law: str, codes: bytes) -> npt.NDArray[np.int16]:
    convert = audioop.ulaw2lin if law == "ulaw" else audioop.alaw2lin
    return np.frombuffer(convert(codes, 2), dtype="<i2").astype(np.int16)


@pytest.mark.parametrize(("law", "encode", "decode", "pt"), LAWS, ids=LAW_IDS)
def test_encode_matches_audioop_for_all_65536_samples(
    law: str, encode: Encoder, decode: Decoder, pt: int
) -> None:
    assert encode(ALL_PCM).tobytes() == oracle_encode(law, ALL_PCM)


@pytest.mark.parametrize(("law", "encode", "decode", "pt"), LAWS, ids=LAW_IDS)
def test_decode_matches_audioop_for_all_256_codes(
    law: str, encode: Encoder, decode: Decoder, pt: int
) -> None:
    expected = oracle_decode(law, ALL_CODES.tobytes())
    np.testing.assert_array_equal(decode(ALL_CODES), expected)
    # Odd length and non-contiguous input take the one-code-at-a-time path.
    np.testing.assert_array_equal(decode(ALL_CODES[:255].tobytes()), expected[:255])
    np.testing.assert_array_equal(decode(ALL_CODES[::3]), expected[::3])


def test_known_g711_vectors() -> None:
    np.testing.assert_array_equal(g711.ulaw_decode(b"\xff\x7f\x00\x80"), [0, 0, -32124, 32124])
    np.testing.assert_array_equal(g711.alaw_decode(b"\xd5\x55\xaa\x2a"), [8, -8, 32256, -32256])
    np.testing.assert_array_equal(g711.ulaw_encode(np.array([0, -1], np.int16)), [0xFF, 0x7E])
    np.testing.assert_array_equal(g711.alaw_encode(np.array([0, -1], np.int16)), [0xD5, 0x55])
    # Full scale clips to the largest codes.
    extremes = np.array([32767, -32768], np.int16)
    np.testing.assert_array_equal(g711.ulaw_encode(extremes), [0x80, 0x00])
    np.testing.assert_array_equal(g711.alaw_encode(extremes), [0xAA, 0x2A])


@pytest.mark.parametrize(("law", "encode", "decode", "pt"), LAWS, ids=LAW_IDS)
def test_batched_2d_encode_and_decode_equal_row_by_row(
    law: str, encode: Encoder, decode: Decoder, pt: int
) -> None:
    pcm = RNG.integers(-32768, 32768, size=(7, 160), dtype=np.int16)
    codes = encode(pcm)
    assert codes.shape == pcm.shape and codes.dtype == np.uint8
    for row in range(pcm.shape[0]):
        assert codes[row].tobytes() == oracle_encode(law, pcm[row])
    decoded = decode(codes)
    assert decoded.shape == pcm.shape and decoded.dtype == np.int16
    for row in range(pcm.shape[0]):
        np.testing.assert_array_equal(decoded[row], oracle_decode(law, codes[row].tobytes()))
    # A strided view of the batch (every other stream) decodes the same.
    np.testing.assert_array_equal(decode(codes[::2]), decoded[::2])


@pytest.mark.parametrize(("law", "encode", "decode", "pt"), LAWS, ids=LAW_IDS)
def test_dispatch_by_payload_type(law: str, encode: Encoder, decode: Decoder, pt: int) -> None:
    pcm = RNG.integers(-32768, 32768, size=160, dtype=np.int16)
    payload = g711.encode(pt, pcm)
    np.testing.assert_array_equal(payload, encode(pcm))
    np.testing.assert_array_equal(g711.decode(pt, payload.tobytes()), decode(payload))


def test_unknown_payload_type_and_wrong_dtypes_are_rejected() -> None:
    with pytest.raises(g711.G711Error, match="payload type 18"):
        g711.decode(18, b"\x00")
    with pytest.raises(g711.G711Error, match="payload type 9"):
        g711.encode(9, np.zeros(160, np.int16))
    with pytest.raises(g711.G711Error, match="int16"):
        g711.ulaw_encode(np.zeros(160, np.int32))
    with pytest.raises(g711.G711Error, match="uint8"):
        g711.alaw_decode(np.zeros(160, np.int16))


@pytest.mark.parametrize(("law", "encode", "decode", "pt"), LAWS, ids=LAW_IDS)
def test_round_trip_error_is_within_three_percent_plus_eight(
    law: str, encode: Encoder, decode: Decoder, pt: int
) -> None:
    value = ALL_PCM.astype(np.int64)
    error = np.abs(decode(encode(ALL_PCM)).astype(np.int64) - value)
    # Steps double per segment, so half a step is at most 1/32 of the magnitude; the
    # truncation to 14 or 13 bits adds up to 8.  Only µ-law clips, above 32124.
    clip = np.abs(value) > 32124 if law == "ulaw" else np.zeros(value.size, bool)
    assert np.all(32 * error[~clip] <= np.abs(value[~clip]) + 256)
    assert error.max() == (32768 - 32124 if law == "ulaw" else 512)


def test_transcoding_tables_equal_decode_then_encode() -> None:
    ulaw_codes = ALL_CODES.tobytes()
    as_alaw = oracle_encode("alaw", oracle_decode("ulaw", ulaw_codes))
    as_ulaw = oracle_encode("ulaw", oracle_decode("alaw", ulaw_codes))
    assert g711.transcode_ulaw_to_alaw(ulaw_codes).tobytes() == as_alaw
    assert g711.transcode_alaw_to_ulaw(ulaw_codes).tobytes() == as_ulaw
    batch = RNG.integers(0, 256, size=(3, 160), dtype=np.uint8)
    np.testing.assert_array_equal(g711.transcode_ulaw_to_alaw(batch), g711.ULAW_TO_ALAW[batch])
    np.testing.assert_array_equal(g711.transcode_alaw_to_ulaw(batch), g711.ALAW_TO_ULAW[batch])


def test_transcoding_keeps_sign_and_order() -> None:
    for table, decode_from, decode_to in (
        (g711.ULAW_TO_ALAW, g711.ULAW_DECODE, g711.ALAW_DECODE),
        (g711.ALAW_TO_ULAW, g711.ALAW_DECODE, g711.ULAW_DECODE),
    ):
        order = np.argsort(decode_from, kind="stable")
        converted = decode_to[table[order]].astype(np.int64)
        assert np.all(np.diff(converted) >= 0)
        assert np.all(np.sign(converted) * np.sign(decode_from[order]) >= 0)


def test_tables_are_read_only() -> None:
    with pytest.raises(ValueError, match="read-only"):
        g711.ULAW_ENCODE[0] = 0
