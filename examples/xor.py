"""XOR with a 2-2-1 sigmoid network: the course's forward pass with given weights, then
training it with backpropagation (full-batch gradient descent with momentum)."""
import numpy as np

import deepgrad as dg
from deepgrad import data, losses, nn, optim

X, y = data.xor()

# The worked example: w(1) = [[0.96, 0.89], [0.28, 0.73]], w(2) = [[0.60], [0.22]], no bias.
net = nn.Sequential(nn.Dense(2, 2, "sigmoid", bias=False), nn.Dense(2, 1, "sigmoid", bias=False))
net.load_state_dict({"0.weight": np.array([[0.96, 0.89], [0.28, 0.73]]),
                     "1.weight": np.array([[0.60], [0.22]])})
out = net(X)
bce = losses.binary_cross_entropy(out, y, reduction="none")
for x, o, l in zip(X, out.numpy().ravel(), bce.numpy().ravel()):
    print(f"x={x.astype(int).tolist()}  y_hat={o:.2f}  BCE={l:.2f}")

# Training from a seeded random start.
dg.manual_seed(0)
net = nn.Sequential(nn.Dense(2, 2, "sigmoid"), nn.Dense(2, 1, "sigmoid"))
opt = optim.SGD(net, lr=2.0, momentum=0.9)
for step in range(1500):
    opt.zero_grad()
    loss = losses.binary_cross_entropy(net(X), y)
    loss.backward()
    opt.step()
    if step % 300 == 0:
        print(f"step {step:4d}  loss {loss.item():.4f}")
print("predictions:", net(X).numpy().ravel().round(3), "targets:", y.ravel())
