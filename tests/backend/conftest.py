import numpy as np
import pytest


@pytest.fixture
def rng():
    """Fresh random inputs every run; the seed is printed on failure."""
    seed = int(np.random.SeedSequence().entropy % (2**32))
    print(f"rng seed {seed}")
    return np.random.default_rng(seed)
