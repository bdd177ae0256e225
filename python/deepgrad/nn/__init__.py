"""deepgrad.nn: modules, parameters in a flat arena, layers and initialisers."""
from __future__ import annotations

from .. import init
from .arena import Arena, Segment
from .layers import (ELU, GELU, SELU, Activation, BatchNorm1d, Dense, Dropout, Identity,
                     LayerNorm, LeakyReLU, Linear, LogSoftmax, Perceptron, ReLU, Residual,
                     Sequential, Sigmoid, SiLU, Softmax, Softplus, Softsign, Step, Swish, Tanh)
from .module import IncompatibleKeys, Module
from .parameter import Parameter

__all__ = ["Module", "Parameter", "Arena", "Segment", "IncompatibleKeys", "init", "Dense",
           "Linear", "Sequential", "Residual", "BatchNorm1d", "LayerNorm", "Dropout",
           "Perceptron", "Activation", "Identity", "Step", "Sigmoid", "Tanh", "ReLU",
           "LeakyReLU", "ELU", "SELU", "GELU", "Softplus", "SiLU", "Swish", "Softsign",
           "Softmax", "LogSoftmax"]

# The diagnostics part adds its re-exports below (nn/utils.py: clipping; nn/rnn.py: RNN/LSTM/GRU).
from . import utils  # noqa: E402
from .rnn import GRU, LSTM, RNN  # noqa: E402

__all__ += ["utils", "RNN", "LSTM", "GRU"]
