"""Apache Beam engine (DirectRunner) == the local converter."""

import os

import pydicom
import pytest

from competition_samples import config_maker
from competition_samples import ich_labels
from competition_samples import parsed_records
from tfrecords_tools import convert
from tfrecords_tools import dicom
from tfrecords_tools.competitions import rsna_ich
from tfrecords_tools.competitions import steel
from tfrecords_tools.items import BadInput

pytest.importorskip("apache_beam")

from tfrecords_tools import beam_convert  # noqa: E402

SUBTYPES = rsna_ich.CLASSES


def _files(out):
    return sorted(f for f in os.listdir(out) if not f.startswith("."))


def _assert_same(local, beam, m_local, m_beam):
    assert m_beam == m_local  # counts per split/fold/class, shard hashes
    assert _files(beam) == _files(local)
    for split in ("train", "test"):
        a, b = parsed_records(local, split), parsed_records(beam, split)
        assert len(a) == len(b) > 0
        for x, y in zip(a, b):
            assert x == y
    for name in _files(local):
        with open(os.path.join(local, name), "rb") as f, \
                open(os.path.join(beam, name), "rb") as g:
            assert f.read() == g.read(), name


def test_steel_beam_equals_local(tmp_path):
    raw = tmp_path / "raw"
    steel.make_sample(str(raw), n=12, size=(32, 200), seed=3)
    make = config_maker("steel", {"folds": 2, "shard_size": 4})
    m_local = convert.convert(make(raw, tmp_path / "local"), progress=False)
    m_beam = beam_convert.convert_beam(make(raw, tmp_path / "beam"),
                                       progress=False)
    _assert_same(tmp_path / "local", tmp_path / "beam", m_local, m_beam)
    assert m_beam["splits"]["train"]["records"] == 12


def test_rsna_ich_beam_equals_local_and_bad_inputs(tmp_path):
    raw = tmp_path / "raw"
    rsna_ich.make_sample(str(raw), n=16, size=16, seed=1)
    bad = raw / "stage_2_train" / f"{sorted(ich_labels(raw, SUBTYPES))[1]}.dcm"
    with dicom.lenient():
        ds = pydicom.dcmread(bad)
        ds.PixelData = ds.PixelData[:-8]  # fails when encoded, not listed
        ds.save_as(bad)
    make = config_maker("rsna_ich", {"folds": 2, "shard_size": 2})
    with pytest.raises(BadInput, match=bad.name):
        beam_convert.convert_beam(make(raw, tmp_path / "failed"),
                                  progress=False)
    assert not (tmp_path / "failed" / "manifest.json").exists()
    m_local = convert.convert(make(raw, tmp_path / "local"), skip_bad=True,
                              progress=False)
    m_beam = beam_convert.convert_beam(make(raw, tmp_path / "beam"),
                                       skip_bad=True, progress=False)
    assert m_local["skipped"] == 1
    _assert_same(tmp_path / "local", tmp_path / "beam", m_local, m_beam)
    with open(tmp_path / "beam" / "errors.csv", encoding="utf-8") as f:
        assert bad.name in f.read()


def test_beam_option_must_be_key_value():
    with pytest.raises(ValueError, match="KEY=VALUE"):
        beam_convert.pipeline_options(["runner"])
    options = beam_convert.pipeline_options(["runner=DirectRunner",
                                             "direct_num_workers=2"])
    assert options.get_all_options()["direct_num_workers"] == 2


def test_command_line_runner_beam(tmp_path, capsys):
    import json

    raw = tmp_path / "raw"
    steel.make_sample(str(raw), n=4, size=(16, 100), seed=0)
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"task": "steel", "data": {
        "raw_dir": str(raw), "records_dir": str(tmp_path / "rec"),
        "folds": 2, "shard_size": 2}}))
    assert convert.main(["--config", str(cfg), "--quiet",
                         "--beam-option", "runner=DirectRunner"]) == 2
    assert "--runner beam" in capsys.readouterr().err
    assert convert.main(["--config", str(cfg), "--quiet", "--runner", "beam",
                         "--beam-option", "direct_num_workers=1"]) == 0
    assert "4 train records" in capsys.readouterr().out
    assert convert.main(["--config", str(cfg), "--verify"]) == 0
