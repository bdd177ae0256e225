"""The perceptron of an introductory course: one unit, weights W = (-1.15, -0.21), bias
w0 = 4.1, then the classic perceptron learning rule on a linearly separable toy set."""
import numpy as np

import deepgrad as dg
from deepgrad import nn

# 1. The worked example: a sigmoid unit with fixed weights.
unit = nn.Perceptron(2, output="sigmoid")
unit.load_state_dict({"weight": np.array([[-1.15], [-0.21]]), "bias": np.array([4.1])})
points = np.array([[0.0, 6.0], [6.0, 8.0]])
for p, out in zip(points, unit(points).numpy().ravel()):
    print(f"sigmoid(4.1 - 1.15*{p[0]:g} - 0.21*{p[1]:g}) = {out:.2f}")

# 2. Rosenblatt's rule with a step output: w <- w + lr * (target - prediction) * x.
rng = np.random.default_rng(0)
X = rng.uniform(-1, 1, size=(100, 2)).astype(np.float32)
y = (X[:, 0] + 2 * X[:, 1] > 0.2).astype(np.float32)  # separable by a line
dg.manual_seed(0)
perceptron = nn.Perceptron(2, output="step")
for epoch in range(200):
    errors = 0
    for xi, ti in zip(X, y):
        pred = perceptron(xi[None, :]).item()
        if pred != ti:
            errors += 1
            with dg.no_grad():
                perceptron.weight.data += 0.1 * (ti - pred) * xi[:, None]
                perceptron.bias.data += 0.1 * (ti - pred)
    if errors == 0:
        break
acc = (perceptron(X).numpy().ravel() == y).mean()
print(f"perceptron rule: {epoch + 1} epochs, training accuracy {acc:.2f}")
