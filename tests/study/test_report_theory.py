"""report.html with --theory and for large grids (issue 17): the tolerance is stated and a run
whose measured per-layer ratio is off the prediction is flagged; each run's section says what
the theory predicts; a phase study's map and accuracy table come first and a large grid lists
its healthy runs in one line; a mean-field-initialised run is compared with the theory at its
own sigma_w^2 and sigma_b^2."""
import copy
import io
import re

import pytest

from deepgrad import report, study, theory
from deepgrad.phase import phase_grid, run_phase


@pytest.fixture(scope="module")
def tanh_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("theory")
    cfgs = study.build_grid([8], [32], ["tanh"], ["xavier"], ["none"], [False], rnn=False,
                            steps=2, batch_size=32, every=1)
    (rec,) = study.run_study(cfgs, str(out), plots=False, stream=io.StringIO())
    return rec


def _html(tmp_path, records, **kw):
    path = report.write_html(str(tmp_path), records, **kw)
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    html5lib = pytest.importorskip("html5lib")
    html5lib.HTMLParser(strict=True).parse(text)
    return text


def test_disagreement_is_flagged_with_the_stated_tolerance(tmp_path, tanh_run):
    good = tanh_run
    t = report.theory_comparison(good)
    assert t["agrees"] is True and t["predicted"] == pytest.approx(
        theory.predict("tanh", 1.0, 0.0, 8)["ratio_per_layer"])
    bad = copy.deepcopy(good)
    bad["config"]["name"] = "tanh-doctored"
    row = bad["history"]["signal_norm"][0]
    # scale hidden layer l by 1.5**(l) : the measured per-layer ratio drops by a factor 1.5
    bad["history"]["signal_norm"][0] = [v if i in (0, len(row) - 1) else v * 1.5 ** i
                                        for i, v in enumerate(row)]
    tb = report.theory_comparison(bad)
    assert tb["agrees"] is False
    assert tb["measured"] == pytest.approx(t["measured"] / 1.5, rel=1e-9)
    text = _html(tmp_path, [good, bad], theory=True)
    assert f"more than {100 * report.THEORY_TOLERANCE:.0f}%" in text
    flagged = re.findall(r'<tr class="bad"><td>([^<]+)</td>', text.split("Theory beside")[1])
    assert flagged == ["tanh-doctored"]
    off = abs(tb["measured"] / tb["predicted"] - 1)
    assert off > 0.25 and f"DISAGREES by {100 * off:.0f}% (more than 20%)" in text
    assert text.count("Mean-field theory (σ<sub>w</sub>² = 1") == 2   # one per run section
    printed = report.format_theory([good, bad])
    assert "DISAGREES" in printed and printed.count("agrees") == 1


def test_meanfield_runs_use_their_own_variances(tanh_run):
    rec = copy.deepcopy(tanh_run)
    rec["config"].update(init="meanfield", sigma_w2=2.5, sigma_b2=0.2)
    t = report.theory_comparison(rec)
    assert t["sigma_w2"] == 2.5 and t["sigma_b2"] == 0.2
    assert t["predicted"] == pytest.approx(
        theory.predict("tanh", 2.5, 0.2, 8)["ratio_per_layer"])


def test_phase_report_shows_the_map_first_and_lists_healthy_runs_briefly(tmp_path):
    cfgs = phase_grid("tanh", [1.0, 2.0, 3.0, 4.0], [0.05], [3, 4, 5, 6], width=4, steps=3)
    assert len(cfgs) > report.BRIEF_ABOVE
    run_phase(cfgs, str(tmp_path), "tanh", plots=False, stream=io.StringIO())
    text = (tmp_path / "report.html").read_text(encoding="utf-8")
    html5lib = pytest.importorskip("html5lib")
    html5lib.HTMLParser(strict=True).parse(text)
    assert text.index("<h2>Phase diagram") < text.index("<h2>Summary")
    assert "6xi_c" in text and "critical sigma_w^2 = " in text      # the accuracy table
    healthy = [c.name for c in cfgs]
    m = re.search(r"No problem found in (\d+) of 16 runs", text)
    assert m is not None
    sections = re.findall(r"<h3>([^<]+)</h3>", text)
    assert int(m.group(1)) + len(sections) == 16
    assert set(sections) <= set(healthy)
