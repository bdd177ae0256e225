"""deepgrad's one random generator. Every random draw in deepgrad (initialisers, randn/rand,
dropout masks, data shuffling when no seed is given) comes from here, so
``deepgrad.manual_seed(seed)`` makes a whole run reproducible."""
from __future__ import annotations

import numpy as np

_generator: np.random.Generator = np.random.default_rng()


def manual_seed(seed: int) -> np.random.Generator:
    """Reseed deepgrad's generator; returns it."""
    global _generator
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"manual_seed: seed must be an int, got {type(seed).__name__}")
    if seed < 0:
        raise ValueError(f"manual_seed: seed must be >= 0, got {seed}")
    _generator = np.random.default_rng(int(seed))
    return _generator


def generator() -> np.random.Generator:
    """The numpy Generator deepgrad draws from (reseeded by manual_seed)."""
    return _generator
