"""deepgrad.functional: activations, softmax, the fused dense layer, normalisation and dropout,
as one public namespace. The ops live in deepgrad.ops (activation, linalg, norm); each is one
tape node backed by a native kernel."""
from __future__ import annotations

from .ops import concat, matmul, maximum, minimum, stack, where  # noqa: F401 (re-exported)
from .ops.activation import (ACTIVATIONS, _ACT_SET, _DEFAULT_ALPHA, _act,  # noqa: F401
                             activation, activation_name, elu, gelu, identity, leaky_relu,
                             log_softmax, relu, selu, sigmoid, silu, softmax, softplus,
                             softsign, step, tanh)
from .ops.linalg import LayerStats, dense, layer_record, linear  # noqa: F401
from .ops.norm import batch_norm, dropout, layer_norm  # noqa: F401
