"""deepgrad.losses: the loss functions as one public namespace (the ops are in
deepgrad.ops.loss: each one tape node on the fused native kernels)."""
from __future__ import annotations

from .ops.loss import (  # noqa: F401
    mse,
    binary_cross_entropy,
    bce_with_logits,
    cross_entropy,
    nll)
