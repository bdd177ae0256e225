"""examples/edge_of_chaos.py runs and its measurements sit on the theory: the per-layer
backward ratio of every width-256 tanh net within 3% of sqrt(chi_1) (a layer's ratio is off by
up to ~1% at this width), ordered below the critical sigma_w^2 and chaotic above it."""
import pathlib
import runpy


def test_edge_of_chaos_example(capsys):
    path = pathlib.Path(__file__).resolve().parents[2] / "examples" / "edge_of_chaos.py"
    runpy.run_path(str(path), run_name="__main__")
    out = capsys.readouterr().out
    assert "the edge of chaos is at sigma_w^2 = 1.7610" in out
    rows = [line.split() for line in out.splitlines()
            if line.split() and line.split()[1:2] and line.split()[1] in
            ("ordered", "critical", "chaotic")]
    assert [r[1] for r in rows] == ["ordered"] * 3 + ["critical"] + ["chaotic"] * 3
    for sw, phase, chi1, xi_q, six_xi_c, theory, measured, first_theory, first_measured in rows:
        assert abs(float(measured) / float(theory) - 1) < 0.03, (sw, theory, measured)
        assert (float(theory) < 1) == (phase == "ordered")
        # over 19 layers the ~1% per-layer error compounds: the end-to-end ratio within 30%
        assert abs(float(first_measured) / float(first_theory) - 1) < 0.3, sw
    assert rows[3][4] == "inf" and rows[3][5] == "1.0000"
