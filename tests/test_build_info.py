import subprocess
import sys

import deepgrad as dg


def test_build_info_is_sane():
    info = dg.build_info()
    for key in ("version", "compiler", "simd", "openmp", "threads", "cuda",
                "cuda_architectures", "cuda_device_count"):
        assert key in info, key
    assert info["simd"] in ("avx2+fma", "portable")
    assert info["threads"] >= 1
    assert isinstance(info["cuda"], bool)
    assert info["cuda_device_count"] >= 0
    if not info["cuda"]:
        assert info["cuda_device_count"] == 0


def test_python_m_deepgrad_prints_build_info():
    out = subprocess.run([sys.executable, "-m", "deepgrad"], capture_output=True, text=True, check=True)
    assert "version" in out.stdout and "simd" in out.stdout


def test_set_num_threads_validates():
    import pytest
    n = dg.get_num_threads()
    dg.set_num_threads(1)
    assert dg.get_num_threads() == 1
    dg.set_num_threads(n)
    with pytest.raises(ValueError):
        dg.set_num_threads(0)


def test_malloc_tuning_is_reported_and_can_be_turned_off():
    import os
    info = dg.build_info()["malloc"]
    assert info.startswith(("glibc top_pad=", "off ("))
    env = dict(os.environ, DEEPGRAD_MALLOC_TUNING="0")
    out = subprocess.run([sys.executable, "-c", "import deepgrad; print(deepgrad.build_info()['malloc'])"],
                         capture_output=True, text=True, check=True, env=env)
    assert out.stdout.strip() == "off (DEEPGRAD_MALLOC_TUNING=0)"
    env = dict(os.environ, MALLOC_TOP_PAD_="0")
    env.pop("DEEPGRAD_MALLOC_TUNING", None)
    out = subprocess.run([sys.executable, "-c", "import deepgrad; print(deepgrad.build_info()['malloc'])"],
                         capture_output=True, text=True, check=True, env=env)
    assert out.stdout.strip() == "off (malloc settings from the environment)"
