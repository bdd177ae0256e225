"""Backpropagation on DAGs: in yhat = w1 * (z1 + z2) with z2 = w2 * (z1 + x) the value z1 feeds
two paths, and a network that applies the SAME Dense layer twice reuses its weight; in both
cases the tape sums the gradients arriving along every path (the multivariate chain rule)."""
import numpy as np

import deepgrad as dg
from deepgrad import nn

# The course's scalar graph: the tape sums the gradients arriving at z1 along both paths.
x = dg.tensor(2.0, dtype="float64")
z1 = dg.tensor(0.7, dtype="float64", requires_grad=True)
w1 = dg.tensor(0.5, dtype="float64", requires_grad=True)
w2 = dg.tensor(-1.5, dtype="float64", requires_grad=True)
z2 = w2 * (z1 + x)
yhat = w1 * (z1 + z2)
yhat.backward()
print(f"yhat = {yhat.item():.4f}")
print(f"dyhat/dw1 = {w1.grad.item():.4f}  (chain rule: z1 + z2 = {0.7 + -1.5 * 2.7:.4f})")
print(f"dyhat/dw2 = {w2.grad.item():.4f}  (chain rule: w1 (z1 + x) = {0.5 * 2.7:.4f})")
print(f"dyhat/dz1 = {z1.grad.item():.4f}  (two paths: w1 + w1 w2 = {0.5 + 0.5 * -1.5:.4f})")

# The graph y = w x + b with L = (y - 9)^2, w = 2, b = 1, x = 3.
w = dg.tensor(2.0, requires_grad=True)
b = dg.tensor(1.0, requires_grad=True)
L = (w * 3.0 + b - 9.0) ** 2
L.backward()
print(f"dL/dw = {w.grad.item():g}, dL/db = {b.grad.item():g}")

# A network reusing one layer: the shared weight lives once in the arena and gets both paths.
dg.manual_seed(0)
shared = nn.Dense(3, 3, "tanh")
net = nn.Sequential(shared, shared, nn.Dense(3, 1))
print(net, f"\narena segments: {net.arena.names}")
net(np.ones((4, 3), dtype=np.float32)).sum().backward()
print("gradient of the shared weight (sum of both uses):\n", shared.weight.grad.numpy())
