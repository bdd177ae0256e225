"""tests/cuda: tests marked ``cuda`` need an NVIDIA GPU and a CUDA build of deepgrad; they are
skipped only when no GPU is present (or the build has no CUDA kernels), never otherwise."""
import numpy as np
import pytest

from deepgrad import _C

HAVE_GPU = bool(_C.build_info()["cuda"]) and _C.cuda_device_count() > 0


def pytest_collection_modifyitems(config, items):
    if HAVE_GPU:
        return
    why = ("deepgrad was built without CUDA" if not _C.build_info()["cuda"]
           else "no CUDA GPU present")
    skip = pytest.mark.skip(reason=why)
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)


@pytest.fixture
def rng():
    """Fresh random inputs every run (never zeros); the seed is printed on failure."""
    seed = int(np.random.SeedSequence().entropy % (2**32))
    print(f"rng seed {seed}")
    return np.random.default_rng(seed)
