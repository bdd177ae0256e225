"""tools/gpu-check's CPU-side logic: argument handling, the no-GPU message, the architecture it
picks from nvidia-smi, and that a failing step neither stops the later ones nor hides the
failure. (The GPU side is exercised by running the script on a GPU machine.)"""
import importlib.machinery
import importlib.util
import os
import stat
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "tools", "gpu-check")


def _module():
    loader = importlib.machinery.SourceFileLoader("gpu_check", SCRIPT)
    spec = importlib.util.spec_from_loader("gpu_check", loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


def _fake_smi(folder, stdout: str, rc: int = 0) -> str:
    """A stand-in nvidia-smi that prints `stdout` and exits with `rc`."""
    path = os.path.join(folder, "nvidia-smi")
    with open(path, "w") as f:
        f.write(f"#!/bin/sh\nprintf '%s\\n' '{stdout}'\nexit {rc}\n")  # builtins only
    os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR)
    return path


def _run(args, path_dirs, tmp_path, **env):
    e = {k: v for k, v in os.environ.items() if k != "OUT"}
    e["PATH"] = os.pathsep.join(path_dirs)
    e.update(env)
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True,
                          env=e, cwd=tmp_path, timeout=120)


def test_parse_compute_cap():
    m = _module()
    assert m.parse_compute_cap("9.0") == "90"
    assert m.parse_compute_cap(" 7.5\n") == "75"
    assert m.parse_compute_cap("8.9") == "89"
    assert m.parse_compute_cap("10.0") == "100"
    for bad in (None, "", "[N/A]", "9", "x.y", "9.0.1"):
        assert m.parse_compute_cap(bad) is None


def test_out_folder_order(tmp_path, monkeypatch):
    m = _module()
    monkeypatch.setenv("OUT", str(tmp_path / "env-out"))
    assert m.out_dir(str(tmp_path / "arg")) == str(tmp_path / "arg")
    assert m.out_dir(None) == str(tmp_path / "env-out")
    monkeypatch.delenv("OUT")
    assert m.out_dir(None) == os.path.join(ROOT, "gpu-check-out")


def test_junit_counts(tmp_path):
    m = _module()
    p = tmp_path / "r.xml"
    p.write_text('<testsuites><testsuite name="pytest" tests="10" failures="1" errors="1" '
                 'skipped="3"></testsuite></testsuites>')
    assert m.junit_counts(str(p)) == (5, 2, 3)
    (tmp_path / "bad.xml").write_text("<testsuites")
    assert m.junit_counts(str(tmp_path / "bad.xml")) is None
    assert m.junit_counts(str(tmp_path / "missing.xml")) is None


def test_no_gpu_is_a_clear_error(tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    r = _run([], [str(empty)], tmp_path)
    assert r.returncode == 2
    assert "no NVIDIA GPU found" in r.stderr and "nvidia-smi is not on PATH" in r.stderr
    assert not (tmp_path / "gpu-check-out").exists()


def test_driver_without_gpu_is_a_clear_error(tmp_path):
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    _fake_smi(str(bin_), "No devices were found", rc=6)
    r = _run([], [str(bin_)], tmp_path)
    assert r.returncode == 2
    assert "nvidia-smi found no GPU (No devices were found)" in r.stderr


@pytest.mark.parametrize("cap, arch", [("7.5", "75"), ("9.0", "90"), ("[N/A]", "90")])
def test_dry_run_builds_for_the_gpu_arch(tmp_path, cap, arch):
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    _fake_smi(str(bin_), f"NVIDIA Test GPU, 999.1, {cap}, 16384 MiB")
    out = tmp_path / "o"
    r = _run(["--dry-run", "--out", str(out)], [str(bin_)], tmp_path)
    assert r.returncode == 0, r.stderr
    assert f"CMAKE_CUDA_ARCHITECTURES={arch}" in r.stdout
    assert "NVIDIA Test GPU" in r.stdout
    assert ("(fallback)" in r.stdout) == (cap == "[N/A]")
    for step in ("[env]", "[build]", "[tests]", "[bench]"):
        assert step in r.stdout
    assert "-p no:benchmark -p no:cacheprovider tests/cuda --junitxml=" in r.stdout
    assert "(dry run)" in r.stdout
    assert not os.listdir(out)  # a dry run writes nothing


def test_arch_argument_is_checked(tmp_path):
    r = _run(["--arch", "sm90", "--dry-run"], [os.path.dirname(sys.executable)], tmp_path)
    assert r.returncode == 2 and "--arch must look like" in r.stderr
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    _fake_smi(str(bin_), "NVIDIA Test GPU, 1, 9.0, 1 MiB")
    r = _run(["--arch", "89", "--dry-run", "--out", str(tmp_path / "o")], [str(bin_)], tmp_path)
    assert r.returncode == 0 and "CMAKE_CUDA_ARCHITECTURES=89" in r.stdout


def test_a_failing_step_does_not_stop_the_rest(tmp_path):
    """Every step fails here (the interpreter is `false`); each later step still runs, the
    summary says which failed, and the exit status is 1."""
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    _fake_smi(str(bin_), "NVIDIA Test GPU, 1, 9.0, 1 MiB")
    false = "/bin/false" if os.path.exists("/bin/false") else "/usr/bin/false"
    out = tmp_path / "o"
    r = _run(["--python", false, "--skip-build", "--out", str(out)], [str(bin_)], tmp_path)
    assert r.returncode == 1, r.stdout + r.stderr
    summary = (out / "summary.md").read_text()
    assert summary.splitlines()[0].startswith("tests/cuda on NVIDIA Test GPU: no result")
    for step in ("tests", "bench"):
        assert f"| {step} | FAILED (exit 1)" in summary
    assert "| build | skipped: --skip-build" in summary
    assert (out / "env.txt").exists() and (out / "tests-cuda.log").exists()


def test_a_crash_runs_the_tests_again_file_by_file(tmp_path):
    """pytest killed by a signal on tests/cuda: gpu-check runs each test file in its own process,
    sums their reports (a file that crashes again counts as one failure) and says so."""
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    _fake_smi(str(bin_), "NVIDIA Test GPU, 1, 9.0, 1 MiB")
    py = tmp_path / "fakepy"
    # a stand-in interpreter: the whole-folder run segfaults; a file run writes a JUnit report
    # (test_memory.py crashes again); anything else succeeds
    py.write_text("""#!/bin/sh
xml=""; target=""
for a in "$@"; do
  case "$a" in
    --junitxml=*) xml="${a#--junitxml=}" ;;
    tests/cuda) target=dir ;;
    tests/cuda/test_memory.py) target=crash ;;
    tests/cuda/*.py) target=file ;;
  esac
done
if [ "$target" = dir ] || [ "$target" = crash ]; then kill -SEGV $$; fi
if [ "$target" = file ]; then
  printf '<testsuite tests="3" failures="0" errors="0" skipped="1"/>' > "$xml"
fi
exit 0
""")
    os.chmod(py, 0o755)
    out = tmp_path / "o"
    r = _run(["--python", str(py), "--skip-build", "--out", str(out)], [str(bin_), "/bin",
                                                                         "/usr/bin"], tmp_path)
    assert "again file by file" in r.stdout
    assert "tests/cuda/test_memory.py left no report (crashed)" in r.stdout
    nfiles = len([f for f in os.listdir(os.path.join(ROOT, "tests", "cuda"))
                  if f.startswith("test_") and f.endswith(".py")])
    summary = (out / "summary.md").read_text().splitlines()[0]
    good = nfiles - 1
    assert summary.startswith(f"tests/cuda on NVIDIA Test GPU: {2 * good} passed, 1 failed, "
                              f"{good} skipped"), summary
    assert r.returncode == 1
