"""tfrecords_tools.inspect: counts, schema and a PNG with masks."""

import numpy as np
from PIL import Image

from tfrecords_tools import draw
from tfrecords_tools import inspect as inspect_cli


def test_prints_counts_and_draws_grid(steel_records, tmp_path, capsys):
    cfg, manifest = steel_records
    out = tmp_path / "grid.png"
    assert inspect_cli.main([cfg.data.records_dir, "--out", str(out),
                             "--n", "5"]) == 0
    text = capsys.readouterr().out
    assert "task steel (segmentation), schema version 1" in text
    assert "mask/encoded:bytes" in text
    train = manifest["splits"]["train"]
    for fold, count in train["records_per_fold"].items():
        row = [line for line in text.splitlines()
               if line.split()[:2] == [fold, str(count)]]
        assert row, (fold, count)
    with Image.open(out) as im:
        picture = np.asarray(im.convert("RGB")).astype(int)
    assert picture.shape[0] > 300 and picture.shape[1] > 800
    # Each class color appears (overlays and legend).
    for color in draw.COLORS[:4].astype(int):
        assert (np.abs(picture - color).sum(-1) < 30).sum() > 20, color


def test_pick_covers_every_class_and_an_empty_record():
    ex = [{"labels": v} for v in ([0, 0], [0, 0], [1, 0], [1, 0], [0, 1])]
    chosen = inspect_cli.pick(ex, 3)
    assert [c["labels"] for c in chosen] == [[0, 0], [1, 0], [0, 1]]


def test_missing_manifest(tmp_path, capsys):
    assert inspect_cli.main([str(tmp_path)]) == 1
    assert "manifest.json not found" in capsys.readouterr().err


def test_overlay_outline_and_blend():
    image = np.full((6, 6), 100, np.uint8)
    masks = np.zeros((6, 6, 2), bool)
    masks[1:5, 1:5, 1] = True
    out = draw.overlay(image, masks, alpha=0.5)
    assert out.shape == (6, 6, 3)
    assert out[0, 0].tolist() == [100, 100, 100]
    assert out[1, 1].tolist() == draw.COLORS[1].tolist()     # outline
    expected = (0.5 * 100 + 0.5 * draw.COLORS[1]).astype(np.uint8)
    assert out[2, 2].tolist() == expected.tolist()           # interior
