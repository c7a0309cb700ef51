"""tei_ort.serving.embedding_types: the int8 / uint8 / binary / base64 contract."""

from __future__ import annotations

import base64

import numpy as np
import pytest
from sentence_transformers.util.quantization import quantize_embeddings

from tei_ort.errors import ValidationError
from tei_ort.serving.embedding_types import (
    RANGE_GRID,
    EmbeddingType,
    Ranges,
    encode,
    from_base64,
    pack_bits,
    parse_type,
    quantize,
    ranges_of,
    rows_base64,
    to_base64,
)


def _vectors(n: int = 64, d: int = 48, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)).astype(np.float32)


def test_int8_and_uint8_are_the_bytes_sentence_transformers_gives_for_the_same_ranges() -> None:
    ranges = ranges_of(_vectors(200))
    values = _vectors(32, seed=1) * 1.2  # some values outside the calibrated range: clipped
    st_ranges = np.stack([ranges.lo, ranges.hi])  # (2, D)
    for precision, unsigned in (("int8", False), ("uint8", True)):
        expected = quantize_embeddings(values, precision=precision, ranges=st_ranges)
        got = quantize(values, ranges, unsigned=unsigned)
        assert got.dtype == expected.dtype and np.array_equal(got, expected)
    int8 = quantize(values, ranges, unsigned=False).astype(np.int16)
    assert np.array_equal(int8, quantize(values, ranges, unsigned=True).astype(np.int16) - 128)


def test_quantize_mapping_is_exact_and_clips() -> None:
    ranges = Ranges(np.array([-1.0, 0.0], np.float32), np.array([1.0, 2.55], np.float32))
    values = np.array([[-1.0, 0.0], [1.5, 2.6], [-5.0, 9.0], [0.0, 0.011]], np.float32)
    uint8 = quantize(values, ranges, unsigned=True)
    # dimension 0: step 2/255, so 0.0 -> floor(127.5) = 127; dimension 1: step 0.01
    assert uint8.tolist() == [[0, 0], [255, 255], [0, 255], [127, 1]]
    int8 = quantize(values, ranges, unsigned=False)
    assert int8.tolist() == [[-128, -128], [127, 127], [-128, 127], [-1, -127]]


def test_a_flat_dimension_does_not_divide_by_zero() -> None:
    ranges = Ranges(np.array([0.5], np.float32), np.array([0.5], np.float32))
    assert quantize(np.array([[0.5], [0.7]], np.float32), ranges, unsigned=True).tolist() == [
        [0],
        [0],
    ]


def test_ranges_are_rounded_outward_to_the_grid() -> None:
    vectors = np.array([[0.10001, -0.30001], [0.2, -0.1]], np.float32)
    ranges = ranges_of(vectors)
    assert np.all(ranges.lo <= vectors.min(axis=0)) and np.all(ranges.hi >= vectors.max(axis=0))
    assert np.all(np.mod(ranges.lo / RANGE_GRID, 1) == 0)
    assert np.all(np.mod(ranges.hi / RANGE_GRID, 1) == 0)
    assert np.all(ranges.hi - vectors.max(axis=0) < RANGE_GRID)


def test_binary_packs_msb_first_and_subtracts_128() -> None:
    values = np.array([[1.0, -1, -1, -1, -1, -1, -1, 0.5, 0, 1, 0, 0, 0, 0, 0, 0]], np.float32)
    ubinary = pack_bits(values, unsigned=True)
    assert ubinary.dtype == np.uint8 and ubinary.tolist() == [[0b10000001, 0b01000000]]
    binary = pack_bits(values, unsigned=False)
    assert binary.dtype == np.int8 and binary.tolist() == [[129 - 128, 64 - 128]]
    assert pack_bits(np.zeros((1, 8), np.float32), unsigned=True).tolist() == [[0]]  # 0 is off


def test_binary_matches_sentence_transformers() -> None:
    values = _vectors(16, 64)
    for precision, unsigned in (("binary", False), ("ubinary", True)):
        expected = quantize_embeddings(values, precision=precision)
        assert np.array_equal(pack_bits(values, unsigned=unsigned), expected)


def test_binary_refuses_a_length_that_is_not_a_whole_byte() -> None:
    with pytest.raises(ValidationError, match="100 dimensions, which is not a multiple of 8"):
        encode(np.zeros((2, 100), np.float32), EmbeddingType.BINARY)


def test_any_shape_encodes_over_the_last_axis() -> None:
    tokens = _vectors(6, 16).reshape(2, 3, 16)  # e.g. (B, T, H) token vectors
    packed = encode(tokens, EmbeddingType.UBINARY)
    assert packed.shape == (2, 3, 2)
    assert np.array_equal(packed[1, 2], encode(tokens[1, 2][None], EmbeddingType.UBINARY)[0])
    ranges = ranges_of(tokens.reshape(-1, 16))
    assert encode(tokens, EmbeddingType.INT8, ranges).shape == (2, 3, 16)


def test_base64_is_the_raw_little_endian_bytes() -> None:
    vector = np.array([1.0, -2.5], np.float32)
    text = to_base64(vector)
    assert base64.b64decode(text) == b"\x00\x00\x80\x3f\x00\x00\x20\xc0"
    assert np.array_equal(from_base64(text, EmbeddingType.FLOAT), vector)
    big = vector.astype(">f4")  # a big-endian array is written little-endian all the same
    assert to_base64(big) == text
    int8 = np.array([[-128, 0, 127]], np.int8)
    assert base64.b64decode(rows_base64(int8)[0]) == b"\x80\x00\x7f"
    matrix = np.arange(6, dtype=np.float16).reshape(2, 3)  # row-major, any float type
    assert np.array_equal(
        np.frombuffer(base64.b64decode(to_base64(matrix)), "<f2").reshape(2, 3), matrix
    )


def test_sizes_per_vector() -> None:
    assert EmbeddingType.FLOAT.bytes_per_vector(384) == 1536
    assert EmbeddingType.INT8.bytes_per_vector(384) == 384
    assert EmbeddingType.UBINARY.bytes_per_vector(384) == 48


def test_an_unknown_type_is_a_422_listing_the_known_ones() -> None:
    with pytest.raises(ValidationError, match="`embedding_type` must be one of `float`"):
        parse_type("int4")
    with pytest.raises(ValidationError):
        parse_type(8)
    assert parse_type("ubinary") is EmbeddingType.UBINARY
