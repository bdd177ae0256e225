"""Issue 10, item 10 (the study): every setting is checked before the first run trains; run
records are keyed by a hash of the configuration, the data set's content and deepgrad's version,
so a record made with other data or another deepgrad is rerun, never reused silently; a
malformed record is reported by file name and rerun."""
import io
import json
import os

import numpy as np
import pytest

from deepgrad import study


def _cfgs(dataset="spirals", **kw):
    base = dict(steps=4, batch_size=16, dataset=dataset, every=1)
    base.update(kw)
    return study.build_grid([3], [4], ["tanh"], ["xavier"], ["none"], [False], rnn=False,
                            **base)


def _run(cfgs, out):
    s = io.StringIO()
    recs = study.run_study(cfgs, str(out), plots=False, stream=s)
    return recs, s.getvalue()


def test_bad_settings_fail_before_anything_trains(tmp_path):
    good = _cfgs()
    bad = study.build_grid([3], [5], ["tanh"], ["xavier"], ["none"], [False], rnn=False,
                           steps=4, seed=-1) + study.build_grid([1], [4], ["bogus"], ["nope"], ["none"], [False],
                                            rnn=False, steps=4)
    with pytest.raises(ValueError) as e:
        study.run_study(good + bad, str(tmp_path / "out"), plots=False, stream=io.StringIO())
    msg = str(e.value)
    for part in ("seed must be an int >= 0", "depth must be >= 2", "unknown activation 'bogus'",
                 "init 'nope'", "nothing was trained"):
        assert part in msg
    runs = tmp_path / "out" / "runs"
    assert not runs.exists() or not [p for p in os.listdir(runs) if p.endswith(".json")]
    with pytest.raises(ValueError, match="not writable"):
        study.run_study(good, "/proc/deepgrad-cannot-write-here", plots=False,
                        stream=io.StringIO())


def test_records_follow_data_content_and_version(tmp_path):
    rng = np.random.default_rng(0)
    data = tmp_path / "d.csv"
    X = rng.standard_normal((40, 2))
    y = (X[:, 0] > 0).astype(int)
    np.savetxt(data, np.column_stack([X, y]), delimiter=",", fmt="%.6f")
    out = tmp_path / "out"
    cfgs = _cfgs(dataset=str(data))
    (rec,), log = _run(cfgs, out)
    assert "training" in log and rec["key"]["hash"]
    _, log = _run(cfgs, out)
    assert "finished earlier, reusing" in log and "training" not in log
    y2 = 1 - y                                                  # same file name, other labels
    np.savetxt(data, np.column_stack([X, y2]), delimiter=",", fmt="%.6f")
    os.utime(data, (1, 1))                                      # even with an old mtime
    study._FINGERPRINTS.clear()
    _, log = _run(cfgs, out)
    assert "trained on other data; rerunning" in log and "training" in log
    path = out / "runs" / f"{cfgs[0].name}.json"
    rec = json.loads(path.read_text())
    rec["key"]["deepgrad"] = "0.0.1"
    path.write_text(json.dumps(rec))
    _, log = _run(cfgs, out)
    assert "made by deepgrad 0.0.1" in log and "training" in log
    rec = json.loads(path.read_text())
    del rec["key"]                                              # a record from before the keys
    path.write_text(json.dumps(rec))
    _, log = _run(cfgs, out)
    assert "no configuration hash; rerunning" in log


def test_malformed_record_is_named_and_rerun(tmp_path):
    out = tmp_path / "out"
    cfgs = _cfgs()
    (first,), _ = _run(cfgs, out)
    path = out / "runs" / f"{cfgs[0].name}.json"
    for junk in ("{not json", json.dumps({"config": 1}), json.dumps([1, 2])):
        path.write_text(junk)
        (rec,), log = _run(cfgs, out)
        assert f"runs/{cfgs[0].name}.json is malformed" in log and "training" in log
        assert rec["loss_curve"] == first["loss_curve"]         # same seed, same run
        json.loads(path.read_text())
