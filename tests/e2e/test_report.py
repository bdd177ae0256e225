"""report.html (issue 17): one self-contained page, valid HTML (html5lib's strict parser),
every image embedded and decodable, no network reference; findings in plain words with the
remedy; and, where Chromium is installed, the page renders in a real headless browser with no
console error."""
import base64
import io
import os
import re
import shutil
import subprocess

import pytest

from deepgrad import study


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    cfgs = study.build_grid([6], [16], ["sigmoid", "relu"], ["normal", "he"], ["none"], [False],
                            rnn=False, steps=10, batch_size=32, every=1)
    study.run_study(cfgs, str(out), plots=True, stream=io.StringIO(), theory=True)
    return out


def test_report_is_valid_self_contained_html(report):
    html5lib = pytest.importorskip("html5lib")
    text = (report / "report.html").read_text(encoding="utf-8")
    html5lib.HTMLParser(strict=True).parse(text)          # raises on any parse error
    assert not re.search(r'(src|href)\s*=\s*"(https?:|//)', text)
    assert "<script" not in text
    srcs = re.findall(r'<img src="([^"]+)"', text)
    pytest.importorskip("matplotlib")
    from PIL import Image
    assert len(srcs) >= 3
    for s in srcs:
        assert s.startswith("data:image/png;base64,")
        Image.open(io.BytesIO(base64.b64decode(s.split(",", 1)[1]))).verify()
    assert "@media print" in text


def test_report_explains_findings_with_remedies(report):
    text = (report / "report.html").read_text(encoding="utf-8")
    assert "mlp-d6-w16-sigmoid-normal" in text
    assert "vanishing" in text and "He or Xavier initialisation" in text
    assert "Theory beside measurement" in text


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or \
    shutil.which("google-chrome")


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed (.ci/run installs it)")
def test_report_renders_in_a_real_browser(report, tmp_path):
    shot = tmp_path / "shot.png"
    r = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                        "--hide-scrollbars", "--window-size=1280,1800",
                        "--enable-logging=stderr", "--v=0", f"--screenshot={shot}",
                        (report / "report.html").as_uri()],
                       capture_output=True, text=True, timeout=120)
    assert shot.exists() and os.path.getsize(shot) > 50_000, r.stderr[-2000:]
    console = [ln for ln in r.stderr.splitlines() if "CONSOLE" in ln or "Uncaught" in ln]
    assert not console, console
    dom = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
                          (report / "report.html").as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert "What each run shows" in dom.stdout
    from PIL import Image
    with Image.open(shot) as im:
        assert im.size == (1280, 1800)
        colours = im.convert("RGB").resize((64, 90)).getcolors(64 * 90)
        assert colours is None or len(colours) > 20          # not a blank page
