"""Without a GPU (this build machine, CI): deepgrad imports, CPU work runs, deepgrad.cuda reports
nothing available and every CUDA request raises the documented error. Runs only where no GPU is
present; the CUDA-less build's message is also checked by simulating such a build."""
import numpy as np
import pytest

import deepgrad
from deepgrad import _C
from deepgrad import cuda

if cuda.is_available():
    pytest.skip("a GPU is present: the no-GPU behaviour cannot be observed here",
                allow_module_level=True)

BUILT_WITHOUT = "deepgrad was built without CUDA; rebuild with -Ccmake.define.DEEPGRAD_CUDA=ON"


def test_import_and_queries_report_no_gpu():
    assert cuda.is_available() is False
    assert cuda.device_count() == 0
    assert deepgrad.build_info()["cuda_device_count"] == 0
    # the CPU path is untouched
    x = deepgrad.tensor(np.arange(6, dtype=np.float32).reshape(2, 3), requires_grad=True)
    (x * x).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), 2 * np.arange(6, dtype=np.float32).reshape(2, 3))


def _expected_message():
    return BUILT_WITHOUT if not cuda.is_built() else "no CUDA device is available"


@pytest.mark.parametrize("call", [
    lambda: cuda.get_device_name(0),
    lambda: cuda.synchronize(),
    lambda: deepgrad.tensor([1.0, 2.0], device="cuda"),
    lambda: deepgrad.zeros(3, device="cuda"),
    lambda: deepgrad.tensor([1.0, 2.0]).to("cuda"),
    lambda: deepgrad.nn.Dense(3, 2).to("cuda"),
])
def test_cuda_requests_raise_clear_error(call):
    with pytest.raises(RuntimeError, match=_expected_message()):
        call()


def test_device_array_creation_raises_not_crashes():
    if not cuda.is_built():
        assert not hasattr(_C, "CudaArray")
        return
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        _C.CudaArray(np.ones(3, dtype=np.float32))
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        _C.CudaArray.zeros((2, 2))
    # the allocator holds nothing and can be queried
    assert cuda.memory_allocated() == 0
    assert cuda.memory_reserved() == 0
    cuda.empty_cache()


def test_build_without_cuda_message(monkeypatch):
    """What a CPU-only build says (simulated: deepgrad.cuda and get_backend read build_info)."""
    info = dict(_C.build_info(), cuda=False, cuda_device_count=0)
    monkeypatch.setattr(_C, "build_info", lambda: info)
    assert cuda.is_available() is False
    assert cuda.device_count() == 0
    for call in (lambda: cuda.get_device_name(), cuda.synchronize, cuda.memory_allocated,
                 cuda.empty_cache, lambda: deepgrad.tensor([1.0], device="cuda")):
        with pytest.raises(RuntimeError) as e:
            call()
        assert str(e.value) == BUILT_WITHOUT


@pytest.mark.skipif(not cuda.is_built(), reason="the counter exists in CUDA builds only")
def test_host_sync_counter_needs_no_device():
    assert _C.cuda_host_syncs() == 0


@pytest.mark.skipif(not cuda.is_built(), reason="a CUDA build's entry point")
def test_tensors_health_at_checks_arguments_before_the_device():
    """The address route of the torch monitor refuses bad arguments by name before it asks for
    a device, and then says there is none (never reads an address)."""
    f = _C.cuda_tensors_health_at
    assert f([], [], "float32").shape == (0, 7)
    with pytest.raises(ValueError, match="dtype must be 'float32' or 'float64'"):
        f([1], [1], "int64")
    with pytest.raises(TypeError, match="lists of ints"):
        f((1,), [1], "float32")
    with pytest.raises(ValueError, match="ptrs has 2 entries but sizes has 1"):
        f([1, 2], [1], "float32")
    with pytest.raises(TypeError, match=r"sizes\[0\] is not an int"):
        f([1], ["x"], "float32")
    with pytest.raises(ValueError, match=r"sizes\[0\] is negative"):
        f([1], [-1], "float32")
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        f([np.ones(4, np.float32).ctypes.data], [4], "float32")


@pytest.mark.skipif(not cuda.is_built(), reason="a CUDA build's entry point")
def test_act_stats_at_checks_items_before_the_device():
    f = _C.cuda_act_stats_at
    assert f([]).shape == (0, 4)
    with pytest.raises(TypeError, match="list of tuples"):
        f((1,))
    with pytest.raises(TypeError, match=r"items\[0\] must be a tuple"):
        f([(1, 2, 3)])
    with pytest.raises(ValueError, match="dtype must be 'float32' or 'float64'"):
        f([(1, 1, 2, 2, "int8", 0, 0.0, 0.0, False)])
    with pytest.raises(ValueError, match="saturation must be 0"):
        f([(1, 1, 2, 2, "float32", 3, 0.0, 0.0, False)])
    with pytest.raises(TypeError, match="wrong type"):
        f([(1, 1, "2", 2, "float32", 0, 0.0, 0.0, False)])
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        f([(1, 1, 2, 2, "float32", 0, 0.0, 0.0, False)])
