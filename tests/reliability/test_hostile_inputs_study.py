"""Hostile inputs to the theory / phase-diagram / plot / report / study-records layer: bad input
gets a clear exception naming the problem and the fix, never a silent wrong answer, a crash
deep in numpy or matplotlib, an unescaped report or a destroyed good file."""
import math

import numpy as np
import pytest

from deepgrad import theory as T


# ------------------------------------------------------------------------------------ theory

def _gl(a, b, n=32, panels=80):
    """Composite Gauss-Legendre nodes and weights on [a, b]."""
    x, w = np.polynomial.legendre.leggauss(n)
    edges = np.linspace(a, b, panels + 1)
    h = np.diff(edges) / 2
    mid = (edges[:-1] + edges[1:]) / 2
    return (mid[:, None] + h[:, None] * x).ravel(), (h[:, None] * w).ravel()


def _phi(x):
    return np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)


def _sech2(u):
    e = np.exp(-2.0 * np.abs(u))
    return 4.0 * e / (1.0 + e) ** 2


def _tanh_chi1_reference(sw, sb):
    """chi_1 of tanh in u = sqrt(q) z (independent of theory.py's rule): E[g(sqrt(q) z)] is
    int g(u) phi(u / sqrt(q)) / sqrt(q) du, and sech^2, sech^4 decay like e^-2|u|, so
    [-40, 40] holds them to 1e-34; tanh^2 = 1 - sech^2. (Agrees with scipy's adaptive quad to
    4e-16 at sigma_w^2 = 1e3..1e6.)"""
    u, w = _gl(-40.0, 40.0)
    q = 1.0
    for _ in range(3000):
        s = math.sqrt(q)
        nq = sw * (1.0 - float(np.sum(w * _sech2(u) * _phi(u / s))) / s) + sb
        if abs(nq - q) < 1e-15 * q:
            break
        q = nq
    s = math.sqrt(q)
    return sw * float(np.sum(w * _sech2(u) ** 2 * _phi(u / s))) / s


def _tanh_c_map_reference(q, c):
    """E[tanh(s z1) tanh(s (c z1 + r z2))], s = sqrt(q), r = sqrt(1 - c^2): each tanh(v) written
    as sign(v) - sign(v) (1 - |tanh v|); the sign parts are erf terms and the rest decays like
    e^-2|v| (agrees with scipy's nested adaptive quad to 3e-17 at q = 1e4, c = 0.3)."""
    s, r = math.sqrt(q), math.sqrt(1 - c * c)
    v, wv = _gl(-40.0, 40.0)
    tail = np.sign(v) * (1.0 - np.abs(np.tanh(v)))

    def inner(z1):   # the expectation over z2 of tanh(s (c z1 + r z2))
        corr = (tail * wv * _phi((v[None, :] / s - c * z1[:, None]) / r)).sum(1) / (s * r)
        return np.array([math.erf(c * z / (r * math.sqrt(2))) for z in z1]) - corr
    z, wz = _gl(0.0, 12.0, 32, 24)
    sign_part = float(np.sum(wz * (inner(z) - inner(-z)) * _phi(z)))
    tanh_part = float(np.sum(wv * tail * inner(v / s) * _phi(v / s))) / s
    return sign_part - tanh_part


@pytest.mark.parametrize("sw", [1e3, 1e4, 1e5, 1e6])
def test_chi1_of_a_saturating_activation_at_large_variance_is_right(sw):
    """At large q* tanh' is a spike of width 1/sqrt(q*) that the plain rule missed: chi_1 came
    out 1% low at sigma_w^2 = 1e4 and ten times too low at 1e6 (0.0 at 1e10)."""
    assert T.chi1("tanh", sw, 0.3) == pytest.approx(_tanh_chi1_reference(sw, 0.3), rel=1e-8)


def test_chi1_at_huge_variance_follows_the_asymptote():
    # q* ~ sigma_w^2 and E[sech^4(sqrt(q) z)] ~ (4/3) phi(0) / sqrt(q)
    assert T.chi1("tanh", 1e10, 0.05) == pytest.approx(4 / 3 / math.sqrt(2 * math.pi) * 1e5,
                                                       rel=1e-4)


def test_c_map_at_large_variance_is_right():
    q, c = 1e4, 0.3
    f = T.ACTIVATIONS["tanh"][0]
    assert T._expect2(f, f, q, c) == pytest.approx(_tanh_c_map_reference(q, c), abs=1e-10)


@pytest.mark.parametrize("kw,phrase", [
    ({"sigma_w2": 1e30}, "use smaller variances"),
    ({"sigma_b2": 1e300}, "use smaller variances"),
    ({"sigma_w2": True}, "sigma_w2 must be a positive number"),
    ({"sigma_b2": True}, "sigma_b2 must be a non-negative number"),
])
def test_absurd_variances_are_refused(kw, phrase):
    args = {"sigma_w2": 1.5, "sigma_b2": 0.05, **kw}
    with pytest.raises(ValueError, match=phrase):
        T.chi1("tanh", args["sigma_w2"], args["sigma_b2"])


@pytest.mark.parametrize("act", [["tanh"], 3, {"tanh": 1}])
def test_activation_that_is_not_a_name(act):
    with pytest.raises(TypeError, match="must be a name"):
        T.chi1(act, 1.5, 0.05)
    assert T.supports(act) is False


@pytest.mark.parametrize("q", [-1.0, float("nan"), float("inf"), "1", None])
def test_q_map_refuses_a_bad_variance(q):
    # -1 was silently taken as 0; inf ran out of memory
    with pytest.raises(ValueError, match=r"q_map: q \(a pre-activation variance\)"):
        T.q_map(q, "tanh", 1.5, 0.05)


def test_q_map_checks_the_variances():
    with pytest.raises(ValueError, match="sigma_w2 must be a positive number"):
        T.q_map(1.0, "tanh", -1.0, 0.05)


@pytest.mark.parametrize("c", [2.0, -2.0, float("nan"), float("inf"), None])
def test_c_map_refuses_a_correlation_outside_minus1_1(c):
    # 2 was clamped to 1, nan gave nan
    with pytest.raises(ValueError, match=r"c_map: c \(a correlation\) must be a number in"):
        T.c_map(c, "tanh", 1.5, 0.05)


@pytest.mark.parametrize("q", [-1.0, float("nan")])
def test_c_map_refuses_a_bad_variance(q):
    with pytest.raises(ValueError, match=r"c_map: q \(a pre-activation variance\)"):
        T.c_map(0.5, "tanh", 1.5, 0.05, q=q)


def test_c_map_keeps_a_correlation_rounded_past_1():
    assert T.c_map(1.0 + 1e-12, "tanh", 1.5, 0.05) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("alpha", [float("nan"), float("inf"), "x"])
def test_bad_alpha(alpha):
    with pytest.raises(ValueError, match="alpha .* must be a finite number"):
        T.chi1("leaky_relu", 2.0, 0.0, alpha=alpha)


def test_alpha_for_an_activation_without_one_is_refused():
    # silently ignored before
    with pytest.raises(ValueError, match="tanh has no alpha, so drop it"):
        T.chi1("tanh", 2.0, 0.1, alpha=0.5)


def test_huge_elu_alpha_is_refused():
    with pytest.raises(ValueError, match=r"elu's alpha must lie in \[-100, 100\]"):
        T.chi1("elu", 2.0, 0.1, alpha=1e10)


@pytest.mark.parametrize("depth", [float("inf"), float("nan"), 2.5, True, "3", 0])
def test_predict_depth(depth):
    with pytest.raises(ValueError, match="depth must be a positive int"):
        T.predict("tanh", 1.5, 0.05, depth)


def test_predict_depth_numpy_int_is_fine():
    assert T.predict("tanh", 1.5, 0.05, np.int64(3))["signal"].shape == (3,)


@pytest.mark.parametrize("lo,hi", [(0, 1), (-1, 1), (10, 1), (1, 1), (float("nan"), 1),
                                   (1e-3, float("inf"))])
def test_critical_sigma_w2_search_range(lo, hi):
    # (10, 1) and (1, 1) gave nan silently, lo = 0 a numpy error
    with pytest.raises(ValueError, match="critical_sigma_w2: the search range needs finite"):
        T.critical_sigma_w2("tanh", 0.05, lo=lo, hi=hi)


@pytest.mark.parametrize("fan_in,fan_out", [(-5, None), (0, 0), (5, -5), (2.5, None)])
def test_sigma_w2_of_init_fans(fan_in, fan_out):
    # fan_in -5 gave a negative variance, 0 a ZeroDivisionError
    with pytest.raises(ValueError, match="must be a positive int"):
        T.sigma_w2_of_init("normal" if fan_out is None else "xavier", "relu", fan_in, fan_out)


# ------------------------------------------------------------------------------------- phase

from deepgrad import phase  # noqa: E402


@pytest.mark.parametrize("text,phrase", [("0:inf:1", "values must be finite"),
                                         ("0:1e9:1e-9", "use a larger STEP")])
def test_parse_range_refuses_infinite_or_huge_ranges(text, phrase):
    # '0:inf:1' raised OverflowError; '0:1e9:1e-9' built 1e18 floats (killed for memory)
    with pytest.raises(ValueError, match=phrase):
        phase.parse_range(text, "--sigma-w")


@pytest.mark.parametrize("kw,phrase", [
    ({"sigma_w2s": [1e13]}, "evaluated up to 1e\\+12"),
    ({"sigma_b2s": [1e13]}, "evaluated up to 1e\\+12"),
    ({"sigma_w2s": "1.0"}, "must be a list of numbers"),     # was iterated per character
    ({"sigma_w2s": ["1.0"]}, "must be a number, got '1.0'"),
    ({"depths": [None]}, "must be a number, got None"),
])
def test_phase_grid_checks_its_cells(kw, phrase):
    with pytest.raises(ValueError, match=phrase):
        phase.phase_grid("tanh", **{"sigma_w2s": [1.0], "sigma_b2s": [0.05], "depths": [10], **kw})


@pytest.mark.parametrize("sws", [[1.0, 1.0], [1.0000001, 1.0000002]])
def test_phase_grid_refuses_cells_that_share_a_run_name(sws):
    # both cells became one record: one run's result silently lost on resume
    with pytest.raises(ValueError, match="would both be the run"):
        phase.phase_grid("tanh", sws, [0.05], [10])


def _phase_rec(sw, sb, d, acc):
    return {"config": {"sigma_w2": sw, "sigma_b2": sb, "depth": d, "name": f"r{sw}-{d}"},
            "result": {"accuracy": acc}}


@pytest.mark.parametrize("records", [[], [_phase_rec(1.0, 0.05, 10, 0.9)]])
def test_plot_phase_without_records_for_that_sigma_b2(tmp_path, records):
    pytest.importorskip("matplotlib")
    with pytest.raises(ValueError, match="plot_phase: no record has sigma_b2 = 0.1"):
        phase.plot_phase(records, str(tmp_path / "p.png"), "tanh", 0.1)


# -------------------------------------------------------------------------------------- plot

from deepgrad import plot as P  # noqa: E402


def _hist(rows, steps=None):
    return {"signal_norm": rows, "steps": list(range(len(rows))) if steps is None else steps,
            "layers": [f"l{i}" for i in range(len(rows[0]) if rows else 0)],
            "global_grad_norm": [1.0] * len(rows)}


def test_failed_save_leaves_the_old_png(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure
    path = tmp_path / "flow.png"
    P.plot_heatmap(_hist([[1.0, 2.0], [3.0, 4.0]]), str(path))
    good = path.read_bytes()

    def broken(self, fh, **kw):
        fh.write(b"\x89PNG half")
        raise OSError("disk full")
    monkeypatch.setattr(Figure, "savefig", broken)
    with pytest.raises(OSError, match="disk full"):
        P.plot_heatmap(_hist([[5.0, 6.0]]), str(path))
    assert path.read_bytes() == good
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flow.png"]


def test_save_path_checks(tmp_path):
    pytest.importorskip("matplotlib")
    h = _hist([[1.0, 2.0]])
    with pytest.raises(IsADirectoryError, match="is a directory"):
        P.plot_heatmap(h, str(tmp_path))
    with pytest.raises(ValueError, match="output path is empty"):
        P.plot_heatmap(h, "")
    with pytest.raises(ValueError, match="no image format 'foo'"):
        P.plot_heatmap(h, str(tmp_path / "x.foo"))
    # no extension: a PNG exactly at the path returned (matplotlib wrote 'noext.png' and the
    # function returned 'noext')
    out = P.plot_heatmap(h, str(tmp_path / "noext"))
    assert out == str(tmp_path / "noext")
    assert (tmp_path / "noext").read_bytes()[:4] == b"\x89PNG"
    assert not (tmp_path / "noext.png").exists()


@pytest.mark.parametrize("fn", [P.plot_heatmap, P.plot_layer_norms])
@pytest.mark.parametrize("hist,phrase", [
    (_hist([[1.0, 2.0], [1.0]]), "all of one length"),
    (_hist([["a", "b"]]), "non-numeric"),
    ({"signal_norm": [[1.0]]}, "history has no 'steps'"),
    (_hist([[1.0], [2.0]], steps=[0]), "1 'steps' but 2 rows"),
])
def test_malformed_histories(tmp_path, fn, hist, phrase):
    pytest.importorskip("matplotlib")
    with pytest.raises(ValueError, match=phrase):
        fn(hist, str(tmp_path / "x.png"))


def test_layer_norms_step_out_of_range(tmp_path):
    pytest.importorskip("matplotlib")
    with pytest.raises(ValueError, match="step=99 is not one of the 1 recorded steps"):
        P.plot_layer_norms(_hist([[1.0, 2.0]]), str(tmp_path / "x.png"), step=99)


def test_global_norm_and_loss_curves_malformed(tmp_path):
    pytest.importorskip("matplotlib")
    with pytest.raises(ValueError, match="history has no 'global_grad_norm'"):
        P.plot_global_norm({"steps": [0]}, str(tmp_path / "g.png"))
    with pytest.raises(ValueError, match="1 'steps' but 2 values"):
        P.plot_global_norm({"global_grad_norm": [1.0, 2.0], "steps": [0]}, str(tmp_path / "g.png"))
    with pytest.raises(ValueError, match="the curve 'a' must be a list of numbers"):
        P.plot_loss_curves({"a": ["x"]}, str(tmp_path / "l.png"))


# -------------------------------------------------------------------------------- study_runs

@pytest.mark.parametrize("pos,value", [(0, "12"), (2, "tanh"), (1, 8)])
def test_build_grid_refuses_a_bare_value_for_a_list(pos, value):
    # "12" gave depths 1 and 2, "tanh" the activations t, a, n, h
    from deepgrad import study_runs
    args = [[4], [8], ["tanh"], ["he"], ["none"], [False]]
    args[pos] = value
    with pytest.raises(ValueError, match="must be a list of values"):
        study_runs.build_grid(*args, rnn=False)


def test_report_takes_a_string_finding_and_a_record_the_theory_cannot_take(tmp_path):
    # a hand-edited record: its findings one string (was listed character by character), and a
    # mean-field init with a NaN sigma_w^2 (made the whole report fail, every run with it)
    import copy
    import io
    from deepgrad import report, study
    cfgs = study.build_grid([4], [8], ["tanh"], ["xavier"], ["none"], [False], rnn=False,
                            steps=3, batch_size=16, every=1)
    rec = study.run_study(cfgs, str(tmp_path / "a"), plots=False, stream=io.StringIO())[0]
    odd = copy.deepcopy(rec)
    odd["config"]["name"] = "odd"
    odd["config"].update(init="meanfield", sigma_w2=float("nan"))
    odd["result"]["findings"] = "vanishing: planted"
    rows = report.summary_rows([rec, odd])
    assert rows[1]["findings"] == "vanishing: planted"
    cmp = report.theory_comparison(odd)
    assert cmp["predicted"] is None and "no prediction" in cmp["why"]
    (tmp_path / "out").mkdir()
    path = report.write_html(str(tmp_path / "out"), [rec, odd], theory=True)
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    assert "vanishing: planted" in text and "<li>v</li>" not in text


def test_load_dataset_takes_a_path_and_names_what_is_not_a_dataset(tmp_path):
    import pathlib
    from deepgrad import study_runs as S
    np.savez(tmp_path / "d.npz", X=np.ones((4, 2)), y=np.array([0, 1, 0, 1]))
    X, y = S.load_dataset(pathlib.Path(tmp_path / "d.npz"), 0)   # was AttributeError
    assert X.shape == (4, 2) and list(y) == [0, 1, 0, 1]
    for bad in (None, 5):
        with pytest.raises(TypeError, match="load_dataset: the dataset must be a name"):
            S.load_dataset(bad, 0)
