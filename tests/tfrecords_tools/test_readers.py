"""Raw readers: RLE text, CSV rows, safe paths, image checks, masks."""

import io

import numpy as np
import pytest
from PIL import Image

from tfrecords_tools import encode
from tfrecords_tools.items import BadInput
from tfrecords_tools.readers import csv_table
from tfrecords_tools.readers import image_file
from tfrecords_tools.readers import rle_text
from tfrecords_tools.readers.paths import safe_join


def _reference_mask():
    """The 3 x 4 worked example, built by hand (rows top to bottom)."""
    m = np.zeros((3, 4), bool)
    m[1, 0] = m[2, 0] = m[1, 3] = True
    return m


def test_rle_worked_example_both_conventions():
    m = _reference_mask()
    # Column-major 1-based positions of the ones: 2, 3, 11.
    positions = np.flatnonzero(m.T.reshape(-1)) + 1
    assert positions.tolist() == [2, 3, 11]
    assert rle_text.mask_to_rle(m) == "2 2 11 1"
    np.testing.assert_array_equal(
        rle_text.runs_to_mask(*rle_text.parse_runs("2 2 11 1"), (3, 4)), m)
    np.testing.assert_array_equal(rle_text.runs_to_mask(
        *rle_text.parse_runs("1 2 7 1", "relative"), (3, 4)), m)


def test_rle_round_trip_random_and_kaggle_rle():
    rng = np.random.default_rng(0)
    m = rng.random((17, 23)) < 0.3
    text = rle_text.mask_to_rle(m)
    np.testing.assert_array_equal(
        rle_text.runs_to_mask(*rle_text.parse_runs(text), m.shape), m)
    rle = pytest.importorskip("kaggle_tf.rle")
    assert rle.encode(m, convention="severstal") == text


@pytest.mark.parametrize("text, reason", [
    ("1 2 3", "pairs expected"), ("1 x", "not an integer"),
    ("0 3", "1-based"), ("5 0", "positive"), ("10 3 2 2", "out of order"),
    ("1 5 3 2", "overlapping")])
def test_rle_malformed(text, reason):
    with pytest.raises(ValueError, match=reason):
        rle_text.parse_runs(text)


def test_rle_past_image_and_empty():
    with pytest.raises(ValueError, match="past the 3x4 image"):
        rle_text.runs_to_mask(*rle_text.parse_runs("10 5"), (3, 4))
    for empty in ("", " ", "-1"):
        assert not rle_text.runs_to_mask(*rle_text.parse_runs(empty),
                                         (3, 4)).any()


def test_csv_rows_with_lines_and_errors(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("ImageId, EncodedPixels\na.jpg, 1 2\n\nb.jpg,-1\n")
    assert csv_table.read_rows(str(path), ("EncodedPixels",)) == [
        (2, {"ImageId": "a.jpg", "EncodedPixels": "1 2"}),
        (4, {"ImageId": "b.jpg", "EncodedPixels": "-1"})]
    with pytest.raises(BadInput, match="missing column 'ClassId'"):
        csv_table.read_rows(str(path), ("ClassId",))
    path.write_text("A,B\n1,2,3\n")
    with pytest.raises(BadInput, match="t.csv: row 2: 3 fields"):
        csv_table.read_rows(str(path))
    with pytest.raises(BadInput, match="file not found"):
        csv_table.read_rows(str(tmp_path / "none.csv"))


def test_safe_join(tmp_path):
    root = str(tmp_path)
    assert safe_join(root, "a", "b.jpg") == str(tmp_path / "a" / "b.jpg")
    for bad in ("../x.jpg", "a/../../x.jpg", "/etc/passwd"):
        with pytest.raises(BadInput, match="row 7: path .* escapes"):
            safe_join(root, bad, source="train.csv", row=7)


def test_image_checks(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(np.full((6, 10, 3), 90, np.uint8)).save(buf, "JPEG")
    good = tmp_path / "good.jpg"
    good.write_bytes(buf.getvalue())
    data, info = image_file.read_image(str(good))
    assert data == buf.getvalue()
    assert (info.height, info.width, info.channels, info.format) == (
        6, 10, 3, "jpeg")
    cases = {"missing.jpg": None, "empty.jpg": b"",
             "cut.jpg": buf.getvalue()[:len(buf.getvalue()) // 2],
             "junk.jpg": b"GIF89a" + b"\0" * 40}
    for name, content in cases.items():
        if content is not None:
            (tmp_path / name).write_bytes(content)
        with pytest.raises(BadInput, match=name):
            image_file.read_image(str(tmp_path / name))


def test_pack_mask_overlapping_classes():
    masks = np.zeros((4, 5, 4), bool)
    masks[1, 2, [0, 3]] = True         # two classes on one pixel
    masks[3, 4, 1] = True
    png = encode.pack_mask(masks)
    with Image.open(io.BytesIO(png)) as im:
        packed = np.asarray(im)
    assert packed[1, 2] == 0b1001 and packed[3, 4] == 0b0010
    np.testing.assert_array_equal(encode.unpack_mask(png, 4), masks)
    with pytest.raises(ValueError, match="at most 16 classes"):
        encode.pack_mask(np.zeros((2, 2, 17), bool))
