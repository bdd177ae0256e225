"""Three interleaved spirals: a ReLU MLP trained with Adam on mini-batches, with a cosine
learning-rate schedule and a checkpoint saved with deepgrad.save."""
import os
import tempfile
import time

import deepgrad as dg
from deepgrad import data, losses, nn, optim

dg.manual_seed(0)
X, y = data.spirals(n=1000, classes=3, noise=0.2, seed=0)
model = nn.Sequential(nn.Dense(2, 64, "relu"), nn.Dense(64, 64, "relu"), nn.Dense(64, 3))
print(model, f"\n{model.num_parameters()} parameters in one arena: {model.arena}")
opt = optim.Adam(model, lr=0.01)
epochs = 30
sched = optim.CosineAnnealingLR(opt, T_max=epochs)
t0 = time.perf_counter()
for epoch in range(epochs):
    for xb, yb in data.batches(X, y, batch_size=128, seed=epoch):
        opt.zero_grad()
        loss = losses.cross_entropy(model(xb), yb)
        loss.backward()
        opt.step()
    sched.step()
    if epoch % 5 == 4:
        acc = (model(X).numpy().argmax(1) == y).mean()
        print(f"epoch {epoch + 1:3d}  loss {loss.item():.4f}  accuracy {acc:.3f}  "
              f"lr {sched.get_last_lr()[0]:.5f}")
print(f"trained in {time.perf_counter() - t0:.2f} s")
path = os.path.join(tempfile.mkdtemp(), "spirals.dg")
dg.save({"model": model.state_dict(), "optim": opt.state_dict()}, path)
print("checkpoint:", path, os.path.getsize(path), "bytes")
