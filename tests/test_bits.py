"""2bit and base3 packing: hand-computed bytes, lossless round trips on ragged shapes, corrupt data."""

import numpy as np
import pytest

from ternaryclip.pack.bits import (
    PackingError,
    base3_to_2bit,
    check_2bit,
    pack_2bit,
    pack_base3,
    packed_2bit_shape,
    unpack_2bit,
    unpack_base3,
)


def test_2bit_layout_interleaves_four_32_column_stripes():
    codes = np.zeros((1, 130), dtype=np.int8)
    codes[0, 0], codes[0, 32], codes[0, 64], codes[0, 96] = 1, -1, 1, -1  # u = 2, 0, 2, 0
    codes[0, 129] = 1  # second block, column 1
    packed = pack_2bit(codes)
    assert packed.shape == (1, 64) == packed_2bit_shape(1, 130)
    assert packed[0, 0] == 2 | (0 << 2) | (2 << 4) | (0 << 6)
    assert packed[0, 1] == 0b01010101  # every code 1 (value 0)
    assert packed[0, 33] == 2 | (1 << 2) | (1 << 4) | (1 << 6)  # column 129 in the second block
    assert packed[0, 34] == 0b01010101  # columns 130.. are padding with code 1


def test_base3_packs_five_trits_a_byte():
    codes = np.array([[1, 0, -1, 1, 0, -1]], dtype=np.int8)  # u = 2 1 0 2 1 | 0 (+ padding 1 1 1 1)
    packed = pack_base3(codes)
    assert packed.tolist() == [2 + 1 * 3 + 0 * 9 + 2 * 27 + 1 * 81, 0 + 3 + 9 + 27 + 81]


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (3, 5), (5, 127), (2, 128), (4, 129), (7, 513), (0, 4)])
def test_round_trips_are_lossless_for_ragged_shapes(shape):
    codes = np.random.default_rng(sum(shape)).integers(-1, 2, shape).astype(np.int8)
    packed = pack_2bit(codes)
    check_2bit(packed, shape[1])
    assert np.array_equal(unpack_2bit(packed, shape[1]), codes)
    b3 = pack_base3(codes)
    assert b3.size == -(-codes.size // 5)
    assert np.array_equal(unpack_base3(b3, *shape), codes)
    assert np.array_equal(base3_to_2bit(b3, *shape, rows_per_chunk=2), packed)


def test_invalid_2bit_codes_are_detected():
    packed = pack_2bit(np.zeros((2, 40), dtype=np.int8))
    bad = packed.copy()
    bad[1, 3] |= 0b11 << 4
    with pytest.raises(PackingError, match="code 3"):
        check_2bit(bad, 40)
    bad = packed.copy()
    bad[0, 20] = 0  # column 20 + 96 = 116 >= 40: a padding code set to 0 (value -1)
    with pytest.raises(PackingError, match="padding"):
        check_2bit(bad, 40)


def test_invalid_base3_bytes_are_detected():
    packed = pack_base3(np.zeros((1, 7), dtype=np.int8))
    with pytest.raises(PackingError, match="243"):
        unpack_base3(np.array([243, 0], dtype=np.uint8), 1, 7)
    bad = packed.copy()
    bad[-1] = 0  # padding trits of the last byte become 0 (value -1)
    with pytest.raises(PackingError, match="padding"):
        base3_to_2bit(bad, 1, 7)
    with pytest.raises(PackingError, match="bytes"):
        unpack_base3(packed[:1], 1, 7)


def test_codes_outside_ternary_are_refused():
    with pytest.raises(ValueError, match="-1, 0"):
        pack_2bit(np.array([[2]], dtype=np.int8))


@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (5, 127), (4, 129), (7, 513), (2, 640)])
def test_compiled_base3_converter_equals_numpy(shape):
    from ternaryclip.kernels import _ext

    codes = np.random.default_rng(sum(shape)).integers(-1, 2, shape).astype(np.int8)
    b3 = pack_base3(codes)
    assert np.array_equal(_ext.base3_to_2bit(b3, *shape), base3_to_2bit(b3, *shape))
    bad = b3.copy()
    bad[0] = 250
    with pytest.raises(ValueError, match="243"):
        _ext.base3_to_2bit(bad, *shape)
    if (shape[0] * shape[1]) % 5:
        bad = b3.copy()
        bad[-1] = 0
        with pytest.raises(ValueError, match="padding"):
            _ext.base3_to_2bit(bad, *shape)
    with pytest.raises(ValueError, match="bytes"):
        _ext.base3_to_2bit(b3[:-1], *shape)
