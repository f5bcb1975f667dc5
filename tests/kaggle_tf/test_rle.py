"""kaggle_tf.rle: encode/decode in both Kaggle conventions."""

import numpy as np
import pytest

from kaggle_tf import rle

# The spec's worked example, rows top to bottom.
EXAMPLE = np.array([[0, 0, 0, 0],
                    [1, 0, 0, 1],
                    [1, 0, 0, 0]], np.uint8)


def reference_severstal(mask):
    """Textbook encoder: transpose, pad, find changes (Kaggle kernels)."""
    pixels = np.concatenate([[0], mask.T.flatten() != 0, [0]])
    runs = np.flatnonzero(pixels[1:] != pixels[:-1]) + 1
    runs[1::2] -= runs[::2]
    return " ".join(map(str, runs))


def reference_siim(mask):
    """Relative offsets re-derived from absolute 0-based runs."""
    pixels = np.concatenate([[0], mask.T.flatten() != 0, [0]])
    edges = np.flatnonzero(pixels[1:] != pixels[:-1])
    if edges.size == 0:
        return "-1"
    starts, ends = edges[::2], edges[1::2]
    offsets = starts - np.concatenate([[0], ends[:-1]])
    pairs = np.stack([offsets, ends - starts], axis=1).ravel()
    return " ".join(map(str, pairs))


def test_worked_example_rederived():
    flat = EXAMPLE.flatten(order="F")  # column-major
    ones = np.flatnonzero(flat)
    np.testing.assert_array_equal(ones, [1, 2, 10])
    # Runs of consecutive 0-based positions: [1, 2] and [10].
    breaks = np.flatnonzero(np.diff(ones) != 1) + 1
    runs = np.split(ones, breaks)
    starts = np.array([r[0] for r in runs])
    lengths = np.array([len(r) for r in runs])
    severstal = " ".join(f"{s + 1} {n}" for s, n in zip(starts, lengths))
    ends = starts + lengths
    offsets = starts - np.concatenate([[0], ends[:-1]])
    siim = " ".join(f"{o} {n}" for o, n in zip(offsets, lengths))
    assert (severstal, siim) == ("2 2 11 1", "1 2 7 1")
    assert rle.encode(EXAMPLE) == severstal
    assert rle.encode(EXAMPLE, convention="siim") == siim
    np.testing.assert_array_equal(rle.decode(severstal, (3, 4)), EXAMPLE)
    np.testing.assert_array_equal(
        rle.decode(siim, (3, 4), convention="siim"), EXAMPLE)


def test_empty_masks():
    empty = np.zeros((5, 7), np.uint8)
    assert rle.encode(empty) == ""
    assert rle.encode(empty, convention="siim") == "-1"
    for text in ("", "  ", None, float("nan")):
        out = rle.decode(text, (5, 7))
        assert out.shape == (5, 7) and out.dtype == np.uint8
        assert not out.any()
    for text in ("-1", " -1", "", None, float("nan")):
        assert not rle.decode(text, (5, 7), convention="siim").any()


def test_full_mask_and_corners():
    full = np.ones((3, 5), bool)
    assert rle.encode(full) == "1 15"
    assert rle.encode(full, "siim") == "0 15"
    corners = np.zeros((3, 5), np.uint8)
    corners[0, 0] = corners[2, 4] = 1
    assert rle.encode(corners) == "1 1 15 1"
    assert rle.encode(corners, "siim") == "0 1 13 1"
    # A run wrapping from the bottom of one column to the top of the next.
    wrap = np.zeros((3, 5), np.uint8)
    wrap[2, 1] = wrap[0, 2] = 1
    assert rle.encode(wrap) == "6 2"


@pytest.mark.parametrize("shape", [(256, 1600), (64, 64), (17, 13),
                                   (30, 6), (9, 12), (1, 40), (40, 1),
                                   (1, 1)])
@pytest.mark.parametrize("convention", rle.CONVENTIONS)
def test_round_trip_random(shape, convention):
    rng = np.random.default_rng(hash(shape) % 2 ** 32)
    reference = (reference_severstal if convention == "severstal"
                 else reference_siim)
    for density in (0.02, 0.5, 0.97):
        mask = (rng.random(shape) < density).astype(np.uint8)
        text = rle.encode(mask, convention=convention)
        assert text == reference(mask)
        back = rle.decode(text, shape, convention=convention)
        assert back.dtype == np.uint8 and back.shape == shape
        np.testing.assert_array_equal(back, mask)


def test_blobs_large_numbers():
    # Starts above 10**4 exercise both formatting cells.
    rng = np.random.default_rng(0)
    mask = np.zeros((256, 1600), np.uint8)
    yy, xx = np.mgrid[:256, :1600]
    for _ in range(4):
        cy, cx = rng.integers(0, 256), rng.integers(0, 1600)
        mask[((yy - cy) / 40.0) ** 2 + ((xx - cx) / 90.0) ** 2 <= 1] = 1
    for convention in rle.CONVENTIONS:
        text = rle.encode(mask, convention)
        reference = (reference_severstal if convention == "severstal"
                     else reference_siim)
        assert text == reference(mask)
        np.testing.assert_array_equal(rle.decode(text, mask.shape,
                                                 convention), mask)


def test_large_images():
    # Above the position-table size: positions are computed instead.
    mask = (np.random.default_rng(3).random((1100, 4000)) < 0.001)
    assert mask.size > rle._TABLE_PIXELS
    assert rle.encode(mask) == reference_severstal(mask)
    # Numbers of 9+ digits (images of 10**8 pixels) skip the digit table.
    assert rle._format(np.array([123456789, 5, 0]), 10 ** 9) == \
        "123456789 5 0"


@pytest.mark.parametrize("dtype", [bool, np.uint8, np.int32, np.float32])
def test_any_nonzero_is_on(dtype):
    mask = np.zeros((6, 8), dtype)
    mask[1:3, 2] = 255 if dtype is not bool else True
    mask[4, 5] = 2 if dtype is not bool else True
    mask[5, 5] = 1 if dtype is not bool else True
    assert rle.encode(mask) == "14 2 35 2"


def test_non_contiguous_input():
    mask = (np.random.default_rng(1).random((20, 32)) < 0.3)
    view = mask[:, ::2]
    assert rle.encode(view) == reference_severstal(view)
    assert rle.encode(mask.T) == reference_severstal(mask.T)


def test_decode_whitespace_variants():
    expected = rle.decode("2 2 11 1", (3, 4))
    for text in ("  2 2 11 1 ", "2  2 11\t1", "2 2\n11 1"):
        np.testing.assert_array_equal(rle.decode(text, (3, 4)), expected)


def test_touching_runs_decode_as_one():
    np.testing.assert_array_equal(rle.decode("2 1 3 1", (3, 4)),
                                  rle.decode("2 2", (3, 4)))


@pytest.mark.parametrize("text, convention, match", [
    ("2 2 11", "severstal", "odd number of values"),
    ("2 2.5", "severstal", r"#1 is not an integer: '2\.5'"),
    ("2 x", "severstal", "not an integer"),
    ("0 2", "severstal", "1-based"),
    ("-3 2", "severstal", "1-based"),
    ("2 0", "severstal", "length 0"),
    ("2 -1", "severstal", "length -1"),
    ("5 2 3 1", "severstal", "sorted"),
    ("2 3 4 1", "severstal", "overlap"),
    ("11 3", "severstal", "past the image of 12 pixels"),
    ("1 99999999999999999999999", "severstal", "larger than the image"),
    ("-1", "severstal", "odd number"),
    ("1 2 -1 1", "siim", "offsets must be >= 0"),
    ("1 0", "siim", "length 0"),
    ("1 2 9 1", "siim", "past the image"),
])
def test_decode_malformed(text, convention, match):
    with pytest.raises(ValueError, match=match) as info:
        rle.decode(text, (3, 4), convention=convention)
    assert "Received" in str(info.value)


def test_bad_arguments():
    with pytest.raises(ValueError, match="convention"):
        rle.encode(EXAMPLE, convention="coco")
    with pytest.raises(ValueError, match=r"2-D.*shape=\(1, 3, 4\)"):
        rle.encode(EXAMPLE[None])
    with pytest.raises(ValueError, match="shape"):
        rle.decode("1 1", (3,))
    with pytest.raises(TypeError, match="must be a string"):
        rle.decode(12, (3, 4))


def test_error_quotes_long_strings_briefly():
    text = " ".join(["5 1"] * 100) + " 1"
    with pytest.raises(ValueError) as info:
        rle.decode(text, (3, 4))
    assert len(str(info.value)) < 200
