"""End to end on CUDA: a small MLP trained on the GPU follows the CPU run's losses step by step,
and the gradient monitor's norms and gradient clipping on CUDA equal the CPU's. Skipped only
without a GPU."""
import numpy as np
import pytest

import deepgrad as dg
from deepgrad import _C, losses, nn, optim
from deepgrad.monitor import GradientMonitor

pytestmark = pytest.mark.cuda
if not (_C.build_info()["cuda"] and _C.cuda_device_count() > 0):
    pytest.skip("no CUDA GPU present", allow_module_level=True)


def spirals(n, classes=3, seed=0):
    r = np.random.default_rng(seed)
    t = r.uniform(0, 1, n)
    k = r.integers(0, classes, n)
    ang = 4 * t + 2 * np.pi * k / classes
    x = np.stack([t * np.cos(ang), t * np.sin(ang)], 1) + 0.02 * r.standard_normal((n, 2))
    return x.astype(np.float32), k.astype(np.int64)


def mlp(seed):
    dg.manual_seed(seed)
    return nn.Sequential(nn.Dense(2, 64, activation="tanh"), nn.Dense(64, 64, activation="relu"),
                         nn.Dense(64, 48, activation="gelu"), nn.Dense(48, 3))


def train(model, opt, x, y, steps, clip=None):
    out = []
    for _ in range(steps):
        opt.zero_grad()
        loss = losses.cross_entropy(model(x), y)
        loss.backward()
        if clip is not None:
            nn.utils.clip_grad_norm_(model, clip)
        opt.step()
        out.append(loss.item())
    return np.array(out)


@pytest.mark.parametrize("make_opt,check_params", [
    (lambda p: optim.Adam(p, lr=1e-2), False),
    (lambda p: optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True), True),
], ids=["adam", "sgd_nesterov"])
def test_mlp_training_matches_cpu_step_by_step(make_opt, check_params):
    x, y = spirals(256)
    cpu, gpu = mlp(0), mlp(0).to("cuda")
    l_cpu = train(cpu, make_opt(cpu.parameters()), dg.tensor(x), y, 30, clip=1.0)
    l_gpu = train(gpu, make_opt(gpu.parameters()), dg.tensor(x, device="cuda"), y, 30, clip=1.0)
    assert l_cpu[-1] < l_cpu[0]  # it trains
    # float32 on both sides with different summation orders; the gap grows slowly over steps
    np.testing.assert_allclose(l_gpu, l_cpu, rtol=2e-3, atol=1e-5)
    if check_params:  # (Adam divides by sqrt(v): rounding noise in ~0 gradients becomes lr-sized)
        for (name, pc), (_, pg) in zip(cpu.named_parameters(), gpu.named_parameters()):
            np.testing.assert_allclose(pg.to("cpu").numpy(), pc.numpy(), rtol=1e-3, atol=1e-4,
                                       err_msg=name)


def test_grad_norms_and_clipping_match_cpu():
    x, y = spirals(128, seed=1)
    cpu, gpu = mlp(3), mlp(3).to("cuda")
    for model, xx in [(cpu, dg.tensor(x)), (gpu, dg.tensor(x, device="cuda"))]:
        model.zero_grad()
        losses.cross_entropy(model(xx), y).backward()
    n_cpu, t_cpu, bad_cpu = cpu.arena.grad_norms()
    n_gpu, t_gpu, bad_gpu = gpu.arena.grad_norms()
    np.testing.assert_allclose(n_gpu, n_cpu, rtol=1e-4, atol=1e-7)
    assert t_gpu == pytest.approx(t_cpu, rel=1e-4) and bad_cpu == bad_gpu == 0
    max_norm = 0.25 * t_cpu
    tot_c = nn.utils.clip_grad_norm_(cpu, max_norm)
    tot_g = nn.utils.clip_grad_norm_(gpu, max_norm)
    assert tot_g == pytest.approx(tot_c, rel=1e-4)
    assert gpu.arena.grad_norms()[1] == pytest.approx(max_norm, rel=1e-4)
    for pc, pg in zip(cpu.parameters(), gpu.parameters()):
        np.testing.assert_allclose(pg.grad.to("cpu").numpy(), pc.grad.numpy(), rtol=1e-3, atol=1e-6)
    nn.utils.clip_grad_value_(cpu, 1e-3)
    nn.utils.clip_grad_value_(gpu, 1e-3)
    for pc, pg in zip(cpu.parameters(), gpu.parameters()):
        np.testing.assert_allclose(pg.grad.to("cpu").numpy(), pc.grad.numpy(), rtol=1e-3, atol=1e-6)


def test_gradient_monitor_matches_cpu():
    x, y = spirals(128, seed=2)
    hist = []
    for device in ["cpu", "cuda"]:
        model = mlp(5).to(device)
        opt = optim.Adam(model.parameters(), lr=1e-2)
        mon = GradientMonitor(model)
        xx = dg.tensor(x, device=device)
        for _ in range(3):
            opt.zero_grad()
            loss = losses.cross_entropy(model(xx), y)
            loss.backward()
            opt.step()
            mon.step(loss)
        hist.append(mon.to_dict())
    for key in ["loss", "global_grad_norm", "layer_grad_norm", "act_mean", "act_std",
                "saturated", "dead"]:
        want = np.array(hist[0][key], dtype=np.float64)   # (None -> NaN: a layer without it)
        assert np.isfinite(want).any() or key in ("saturated", "dead"), key
        # (a fraction may differ by an element on the bound: float32 GEMMs round differently)
        atol = 3.0 / (128 * 64) if key in ("saturated", "dead") else 1e-6
        np.testing.assert_allclose(np.array(hist[1][key], dtype=np.float64), want, rtol=1e-3,
                                   atol=atol, err_msg=key)
    assert np.isfinite(np.array(hist[0]["saturated"], dtype=np.float64)).any() or \
        np.isfinite(np.array(hist[0]["dead"], dtype=np.float64)).any()


def test_sequential_dense_chain_on_cuda_matches_the_per_layer_path_and_the_cpu():
    # nn.Sequential runs the Dense chain as one node (F.dense_stack) through the CUDA backend's
    # dense kernels: the same calls as layer by layer, so the same values; and the CPU's to
    # float32 rounding
    rng = np.random.default_rng()
    x, y = spirals(64, seed=int(rng.integers(1 << 30)))
    cpu, gpu = mlp(4), mlp(4).to("cuda")
    xg = dg.tensor(x, device="cuda", requires_grad=True)
    out = gpu(xg)
    assert out._node.name == "dense_stack"
    runs = []
    for fused in (True, False):
        gpu.zero_grad()
        xg.grad = None
        h = xg
        if fused:
            h = gpu(h)
        else:
            for m in gpu:
                h = m(h)
        losses.cross_entropy(h, y).backward()
        runs.append([h.to("cpu").numpy(), xg.grad.to("cpu").numpy()] +
                    [p.grad.to("cpu").numpy() for p in gpu.parameters()])
    for a, b in zip(*runs):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    xc = dg.tensor(x, requires_grad=True)
    hc = cpu(xc)
    losses.cross_entropy(hc, y).backward()
    ref = [hc.numpy(), xc.grad.numpy()] + [p.grad.numpy() for p in cpu.parameters()]
    for a, b in zip(runs[0], ref):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-6)
