"""Bad inputs give clear Python exceptions (never a crash or a silent wrong answer)."""
import numpy as np
import pytest

import deepgrad as dg
import deepgrad.functional as F


def test_cuda_request_without_cuda_is_a_clear_error():
    if dg.build_info()["cuda"] and dg.build_info()["cuda_device_count"] > 0:
        pytest.skip("a GPU is present; the CUDA tests cover this path")
    msg = "built without CUDA|no CUDA device"
    with pytest.raises(RuntimeError, match=msg):
        dg.tensor([1.0], device="cuda")
    with pytest.raises(RuntimeError, match=msg):
        dg.zeros(2, device="cuda")
    with pytest.raises(RuntimeError, match=msg):
        dg.ones(2).to("cuda")
    if not dg.build_info()["cuda"]:
        with pytest.raises(RuntimeError, match="-Ccmake.define.DEEPGRAD_CUDA=ON"):
            dg.ones(2).cuda()


def test_unknown_device_and_dtype():
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        dg.tensor([1.0], device="tpu")
    with pytest.raises(TypeError, match="unsupported dtype"):
        dg.tensor([1.0], dtype="float16")
    with pytest.raises(TypeError, match="cannot make a tensor"):
        dg.tensor(["a", "b"])
    with pytest.raises(ValueError, match="'tpu' is neither a device .* nor a dtype"):
        dg.ones(2).to("tpu")
    assert dg.ones(2).to("float64").dtype == np.float64


def test_mixed_dtypes_are_refused_with_a_hint():
    with pytest.raises(TypeError, match="float32 and float64.*double"):
        dg.ones(2) + dg.ones(2, dtype="float64")
    with pytest.raises(TypeError, match="dtypes"):
        dg.ones(2, 2) @ dg.ones(2, 2, dtype="float64")


def test_shape_errors():
    with pytest.raises(ValueError, match="not aligned: 3 \\(dim 1\\) != 4"):
        dg.ones(2, 3) @ dg.ones(4, 5)
    with pytest.raises(ValueError):
        dg.ones(2, 3) + dg.ones(4)
    with pytest.raises(ValueError, match="cannot reshape a tensor of shape \\(2, 3\\)"):
        dg.ones(2, 3).reshape(4, 2)
    with pytest.raises(ValueError, match="axis 2 is out of range"):
        dg.ones(2, 3).sum(axis=2)
    with pytest.raises(IndexError, match="shape \\(2, 3\\)"):
        dg.ones(2, 3)[5]
    with pytest.raises(ValueError, match="differ outside axis"):
        dg.concat([dg.ones(2, 3), dg.ones(3, 3)], axis=1)
    with pytest.raises(ValueError, match="one shape"):
        dg.stack([dg.ones(2), dg.ones(3)])
    with pytest.raises(ValueError, match="only 1-D and 2-D"):
        dg.ones(2, 2, 2) @ dg.ones(2, 2)


def test_integer_tensors_cannot_require_grad():
    with pytest.raises(TypeError, match="only float tensors"):
        dg.tensor([1, 2], dtype="int64", requires_grad=True)


def test_unsupported_operand_types():
    with pytest.raises(TypeError, match="unsupported operand"):
        dg.ones(2) + "x"
    with pytest.raises(TypeError):
        dg.ones(2) + None


def test_hook_and_retain_grad_need_requires_grad():
    with pytest.raises(RuntimeError, match="does not require grad"):
        dg.ones(2).register_hook(lambda g: g)
    with pytest.raises(RuntimeError, match="does not require grad"):
        dg.ones(2).retain_grad()


def test_hook_returning_a_wrong_shape_is_an_error():
    x = dg.ones(3, requires_grad=True)
    y = x * 2
    y.register_hook(lambda g: dg.ones(2))
    with pytest.raises(ValueError, match="hook returned a gradient of shape \\(2,\\)"):
        y.sum().backward()


def test_nan_input_propagates_without_crash_and_anomaly_mode_reports_it():
    x = dg.tensor([[np.nan, 1.0]], requires_grad=True)
    w = dg.ones(2, 2, requires_grad=True)
    y = F.dense(x, w, None, "tanh")
    assert np.isnan(y.numpy()).all()
    with dg.detect_anomaly():
        with pytest.raises(dg.autograd.AnomalyError, match="'dense'"):
            F.dense(x, w, None, "tanh")


def test_manual_seed_validates():
    with pytest.raises(TypeError):
        dg.manual_seed(1.5)
    with pytest.raises(ValueError):
        dg.manual_seed(-1)


def test_course_perceptron_example():
    # w0 = 4.1, W = (-1.15, -0.21), sigmoid: 0.94 at (0, 6) and 0.01 at (6, 8).
    w = dg.tensor([[-1.15], [-0.21]])
    b = dg.tensor([4.1])
    out = F.dense(dg.tensor([[0.0, 6.0], [6.0, 8.0]]), w, b, "sigmoid").numpy().ravel()
    np.testing.assert_allclose(np.round(out, 2), [0.94, 0.01])
