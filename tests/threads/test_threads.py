"""Thread safety of the tape: grad mode, anomaly mode and the module stack are per thread.

Tests switch threads every microsecond (sys.setswitchinterval) so that the interleavings that
lost tape nodes when the switches were process-wide happen within a few steps."""
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import deepgrad as dg
from deepgrad import autograd, losses, nn, optim

STEPS = 30


@pytest.fixture(autouse=True)
def fast_switching():
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(old)
    assert dg.is_grad_enabled() and not dg.is_anomaly_enabled()


def _model(seed):
    dg.manual_seed(seed)
    return nn.Sequential(nn.Dense(8, 16, "tanh"), nn.LayerNorm(16), nn.Dense(16, 16, "relu"),
                         nn.Dense(16, 4))


def _data(seed=1):
    rng = np.random.default_rng(seed)
    return (dg.tensor(rng.standard_normal((32, 8)).astype(np.float32)),
            rng.integers(0, 4, 32).astype(np.int64))


def _train(model, steps=STEPS, errors=None):
    """SGD with momentum on a fixed batch; the loss mixes the fused layers and tape ops."""
    x, y = _data()
    opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    try:
        for _ in range(steps):
            opt.zero_grad()
            out = model(x)
            loss = losses.cross_entropy(out, y) + 1e-3 * (out * out).mean()
            loss.backward()
            opt.step()
    except BaseException as e:  # noqa: BLE001 - reported by the main thread
        if errors is None:
            raise
        errors.append(e)
    return [p.numpy().copy() for p in model.parameters()]


def _run_threads(*targets):
    errors = []
    threads = [threading.Thread(target=t, args=(errors,)) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
        assert not t.is_alive(), "a thread did not finish"
    if errors:
        raise errors[0]


def test_two_threads_training_own_models_match_the_sequential_runs_bit_for_bit():
    expected = [_train(_model(s)) for s in (3, 4)]
    models = [_model(3), _model(4)]
    got = [None, None]

    def worker(i):
        return lambda errors: got.__setitem__(i, _train(models[i], errors=errors))
    _run_threads(worker(0), worker(1))
    for exp, res in zip(expected, got):
        assert res is not None
        for a, b in zip(exp, res):
            np.testing.assert_array_equal(a, b)  # bit-identical weights


@pytest.mark.parametrize("same_model", [False, True], ids=["other_model", "same_model"])
def test_trainer_beside_a_no_grad_evaluator_gets_the_sequential_gradients(same_model):
    """Evaluating under no_grad records nothing and writes nothing, so the trainer's run is the
    sequential one bit for bit, even when the evaluator reads the very model being trained."""
    expected = _train(_model(5))
    trainee = _model(5)
    evaluated = trainee if same_model else _model(6)
    x, _ = _data(2)
    done = threading.Event()
    got = []
    evals = [0]

    def trainer(errors):
        try:
            got.append(_train(trainee, errors=errors))
        finally:
            done.set()

    def evaluator(errors):
        try:
            while True:  # at least once, however fast the trainer is
                with dg.no_grad():
                    out = evaluated(x)
                assert not out.requires_grad and out.grad_fn is None
                evals[0] += 1
                if done.is_set():
                    break
        except BaseException as e:  # noqa: BLE001
            errors.append(e)
            done.set()
    _run_threads(trainer, evaluator)
    assert evals[0] > 0
    for a, b in zip(expected, got[0]):
        np.testing.assert_array_equal(a, b)


def test_two_threads_calling_a_fresh_model_first_lay_it_out_once():
    """The arena is laid out lazily on first use; a trainer and an evaluator starting together
    on a fresh model each built one, moving parameters under the other's optimizer."""
    x, y = _data()
    expected = _train(_model(7), steps=3)
    for _ in range(150):
        model = _model(7)
        start = threading.Barrier(2)
        got = []

        def trainer(errors):
            start.wait()
            got.append(_train(model, steps=3, errors=errors))

        def evaluator(errors):
            start.wait()
            try:
                for _ in range(5):
                    with dg.no_grad():
                        model(x)
            except BaseException as e:  # noqa: BLE001
                errors.append(e)
        _run_threads(trainer, evaluator)
        assert len({id(p._arena) for p in model.parameters()}) == 1
        for a, b in zip(expected, got[0]):
            np.testing.assert_array_equal(a, b)


def test_grad_mode_is_never_left_off_in_any_thread():
    def flipper(errors):
        try:
            for _ in range(500):
                with dg.no_grad():
                    assert not dg.is_grad_enabled()
                    with dg.enable_grad():
                        assert dg.is_grad_enabled()
                assert dg.is_grad_enabled()
        except BaseException as e:  # noqa: BLE001
            errors.append(e)
    _run_threads(flipper, flipper, flipper)
    assert dg.is_grad_enabled()
    seen = []
    t = threading.Thread(target=lambda: seen.append(dg.is_grad_enabled()))
    t.start()
    t.join()
    assert seen == [True]


def test_a_new_thread_starts_with_grad_on_and_anomaly_off_whatever_the_parent_set():
    seen = {}

    def probe():
        w = dg.tensor([1.0, 2.0], requires_grad=True)
        seen["grad"] = dg.is_grad_enabled()
        seen["anomaly"] = dg.is_anomaly_enabled()
        seen["records"] = (w * 2).requires_grad
        seen["module"] = autograd.current_module()
    with dg.no_grad(), dg.detect_anomaly():
        t = threading.Thread(target=probe)
        t.start()
        t.join()
        assert not dg.is_grad_enabled() and dg.is_anomaly_enabled()
    assert seen == {"grad": True, "anomaly": False, "records": True, "module": None}


def test_anomaly_mode_in_one_thread_does_not_leak_into_another():
    entered, checked = threading.Event(), threading.Event()
    result = {}

    def anomalous(errors):
        try:
            with dg.detect_anomaly():
                entered.set()
                checked.wait(30)
                x = dg.tensor([-1.0], requires_grad=True)
                with pytest.raises(autograd.AnomalyError):
                    x.log() * 0 + x.sqrt()
        except BaseException as e:  # noqa: BLE001
            errors.append(e)
            checked.set()

    def plain(errors):
        try:
            entered.wait(30)
            result["anomaly"] = dg.is_anomaly_enabled()
            x = dg.tensor([-1.0], requires_grad=True)
            result["value"] = x.sqrt().numpy()  # NaN, not an AnomalyError here
        except BaseException as e:  # noqa: BLE001
            errors.append(e)
        finally:
            checked.set()
    _run_threads(anomalous, plain)
    assert result["anomaly"] is False and np.isnan(result["value"]).all()


def test_the_module_stack_belongs_to_the_thread():
    """Anomaly mode names the module of the calling thread, not one another thread is inside."""
    inside, release = threading.Event(), threading.Event()
    names = {}

    class Blocking(nn.Module):
        def forward(self, x):
            names["blocking"] = autograd.current_module()
            inside.set()
            release.wait(30)
            return x

    class Probe(nn.Module):
        def forward(self, x):
            names["probe"] = autograd.current_module()
            return x

    outer = nn.Sequential(Blocking())
    other = nn.Sequential(nn.Identity(), Probe())

    def first(errors):
        try:
            with dg.detect_anomaly():
                outer(dg.tensor([1.0]))
        except BaseException as e:  # noqa: BLE001
            errors.append(e)
            inside.set()

    def second(errors):
        try:
            inside.wait(30)
            with dg.detect_anomaly():
                other(dg.tensor([1.0]))
                names["after"] = autograd.current_module()
        except BaseException as e:  # noqa: BLE001
            errors.append(e)
        finally:
            release.set()
    _run_threads(first, second)
    assert names == {"blocking": "0", "probe": "1", "after": None}


@pytest.mark.parametrize("switch", [dg.no_grad, dg.enable_grad, dg.detect_anomaly])
def test_switches_restore_the_previous_mode_after_an_exception(switch):
    before = (dg.is_grad_enabled(), dg.is_anomaly_enabled())
    with pytest.raises(KeyError):
        with switch():
            raise KeyError("x")

    @switch()
    def fails():
        raise KeyError("y")
    with pytest.raises(KeyError):
        fails()
    assert (dg.is_grad_enabled(), dg.is_anomaly_enabled()) == before


def test_one_switch_instance_shared_by_threads_and_nested_restores_each_threads_mode():
    shared = dg.no_grad()
    barrier = threading.Barrier(3)
    seen = []

    def worker(start_mode):
        def run(errors):
            try:
                dg.set_grad_enabled(start_mode)
                for _ in range(200):
                    with shared:
                        barrier.wait(10) if _ == 0 else None
                        with shared:
                            assert not dg.is_grad_enabled()
                        assert not dg.is_grad_enabled()
                    assert dg.is_grad_enabled() is start_mode
                seen.append(start_mode)
            except BaseException as e:  # noqa: BLE001
                errors.append(e)
                barrier.abort()
        return run
    _run_threads(worker(True), worker(False), worker(True))
    assert sorted(seen) == [False, True, True] and dg.is_grad_enabled()


def test_switch_left_open_across_a_generator_yield():
    def gen():
        with dg.no_grad():
            yield dg.is_grad_enabled()
            yield dg.is_grad_enabled()
    g = gen()
    assert next(g) is False
    with dg.enable_grad():  # another switch closes while the generator's is open
        assert dg.is_grad_enabled()
    assert next(g) is False
    g.close()
    assert dg.is_grad_enabled()


@pytest.mark.parametrize("setter,getter", [(dg.set_grad_enabled, dg.is_grad_enabled),
                                           (dg.set_detect_anomaly, dg.is_anomaly_enabled)])
def test_set_mode_is_a_call_a_context_manager_and_a_decorator_like_pytorch(setter, getter):
    start = getter()
    setter(not start)  # the call form switches at once
    assert getter() is (not start)
    setter(start)
    with setter(not start):  # the with form restores the mode from before the call
        assert getter() is (not start)
        with pytest.raises(KeyError), setter(start):
            assert getter() is start
            raise KeyError
        assert getter() is (not start)
    assert getter() is start

    @setter(not start)  # the decorator switches only inside the function
    def f():
        return getter()
    assert getter() is start
    assert f() is (not start) and getter() is start


def test_switches_decorate_with_or_without_parentheses():
    @dg.no_grad
    def bare():
        return dg.is_grad_enabled()

    @dg.no_grad()
    def called():
        return dg.is_grad_enabled()

    @dg.detect_anomaly
    def anomalous():
        return dg.is_anomaly_enabled()
    assert bare.__name__ == "bare" and bare() is False and called() is False
    assert anomalous() is True and not dg.is_anomaly_enabled() and dg.is_grad_enabled()


def test_backward_that_raises_restores_grad_mode():
    w = dg.tensor([1.0, 2.0], requires_grad=True)
    y = (w * 3).sum()
    y.register_hook(lambda g: (_ for _ in ()).throw(ValueError("hook failed")))
    with pytest.raises(ValueError, match="hook failed"):
        y.backward()
    assert dg.is_grad_enabled()


def test_one_model_trained_from_two_threads_at_once_does_not_crash():
    """The user's race (updates interleave, so the weights are not reproducible), but the
    process must survive it and the weights stay finite: run in a subprocess so a crash is
    reported rather than taking pytest down."""
    script = textwrap.dedent("""
        import sys, threading
        import numpy as np
        import deepgrad as dg
        from deepgrad import losses, nn, optim
        sys.setswitchinterval(1e-6)
        dg.manual_seed(0)
        model = nn.Sequential(nn.Dense(8, 32, "tanh"), nn.LayerNorm(32), nn.Dense(32, 4))
        rng = np.random.default_rng(0)
        x = dg.tensor(rng.standard_normal((64, 8)).astype(np.float32))
        y = rng.integers(0, 4, 64)
        opt = optim.Adam(model.parameters(), lr=1e-3)
        errors = []
        def train():
            for _ in range(150):
                try:
                    opt.zero_grad()
                    loss = losses.cross_entropy(model(x), y)
                    loss.backward()
                    opt.step()
                except Exception as e:  # a clean Python error is acceptable, a crash is not
                    errors.append(type(e).__name__)
        ts = [threading.Thread(target=train) for _ in range(2)]
        [t.start() for t in ts]
        [t.join() for t in ts]
        ok = all(np.isfinite(p.numpy()).all() for p in model.parameters())
        print("DONE", ok, dg.is_grad_enabled(), sorted(set(errors)))
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, f"exit code {r.returncode}\n{r.stdout}\n{r.stderr}"
    assert "DONE True True" in r.stdout, r.stdout + r.stderr
