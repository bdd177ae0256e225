"""Device arrays and the caching allocator: host<->device round trips, views into one storage
(the arena), copies, casts, allocator statistics, steady state without cudaMalloc, and a clean
out-of-memory error."""
import gc

import numpy as np
import pytest

from deepgrad import _C
from deepgrad import cuda

pytestmark = pytest.mark.cuda
CudaArray = getattr(_C, "CudaArray", None)


def test_queries():
    assert cuda.is_available()
    assert cuda.device_count() >= 1
    assert isinstance(cuda.get_device_name(0), str) and cuda.get_device_name(0)
    with pytest.raises(IndexError):
        cuda.get_device_name(cuda.device_count())
    cuda.synchronize()


@pytest.mark.parametrize("shape", [(), (1,), (7,), (3, 5), (2, 3, 4, 5), (0, 3), (1031, 17)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
def test_roundtrip(rng, shape, dtype):
    a = (rng.standard_normal(shape) * 1000).astype(dtype)
    d = CudaArray(a)
    assert d.shape == shape and d.dtype == np.dtype(dtype) and d.size == a.size
    assert d.ndim == len(shape) and d.nbytes == a.nbytes
    back = d.numpy()
    assert back.dtype == np.dtype(dtype) and back.shape == shape
    np.testing.assert_array_equal(back, a)


def test_noncontiguous_and_other_int_inputs(rng):
    a = rng.standard_normal((6, 8)).astype(np.float32)
    np.testing.assert_array_equal(CudaArray(a.T).numpy(), a.T)
    np.testing.assert_array_equal(CudaArray(a[::2, 1::3]).numpy(), a[::2, 1::3])
    i = np.arange(10, dtype=np.int32)
    d = CudaArray(i)
    assert d.dtype == np.int64
    np.testing.assert_array_equal(d.numpy(), i)


@pytest.mark.parametrize("bad", [np.ones(3, dtype=bool), np.ones(3, dtype=np.float16),
                                 np.array(["a"]), np.ones(2, dtype=np.complex64)])
def test_unsupported_dtypes_raise(bad):
    with pytest.raises(TypeError, match="cuda"):
        CudaArray(bad)


def test_views_share_storage_like_the_arena(rng):
    buf = CudaArray.zeros((100,))
    a = rng.standard_normal((3, 4)).astype(np.float32)
    v = buf.view(10, (3, 4))
    assert v.storage_ptr == buf.storage_ptr and v.offset == 10
    assert v.data_ptr == buf.data_ptr + 40
    v.copy_(a)
    host = buf.numpy()
    np.testing.assert_array_equal(host[10:22].reshape(3, 4), a)
    assert not host[:10].any() and not host[22:].any()
    # a view of a view, and a write through the parent seen by the view
    w = v.view(4, (4,))
    np.testing.assert_array_equal(w.numpy(), a[1])
    buf.fill_(2.5)
    np.testing.assert_array_equal(v.numpy(), np.full((3, 4), 2.5, np.float32))
    # the storage lives as long as any view does
    del buf
    np.testing.assert_array_equal(w.numpy(), np.full(4, 2.5, np.float32))
    with pytest.raises(IndexError):
        v.view(10, (3,))
    with pytest.raises(ValueError):
        v.reshape((5,))
    r = v.reshape((12,))
    assert r.storage_ptr == v.storage_ptr and r.shape == (12,)


def test_copy_is_independent_and_astype(rng):
    a = rng.standard_normal((5, 7)).astype(np.float32)
    d = CudaArray(a)
    c = d.copy()
    d.fill_(0.0)
    np.testing.assert_array_equal(c.numpy(), a)
    c64 = c.astype("float64")
    assert c64.dtype == np.float64
    np.testing.assert_array_equal(c64.numpy(), a.astype(np.float64))
    i = CudaArray(np.array([1.7, -2.2, 3.0])).astype(np.int64)
    np.testing.assert_array_equal(i.numpy(), np.array([1, -2, 3]))
    # copy_ from another dtype casts; from numpy uploads
    e = CudaArray.empty((5, 7))
    e.copy_(c64)
    np.testing.assert_array_equal(e.numpy(), a)
    e.copy_(a * 2)
    np.testing.assert_array_equal(e.numpy(), a * 2)
    with pytest.raises(ValueError):
        e.copy_(np.ones(3, np.float32))


def test_allocator_statistics_and_empty_cache():
    gc.collect()  # arrays held by cycles from earlier tests must not be freed mid-test
    cuda.empty_cache()
    base_alloc = cuda.memory_allocated()
    d = CudaArray.empty((1 << 20,))  # 4 MiB
    assert cuda.memory_allocated() >= base_alloc + 4 * 2**20
    assert cuda.memory_reserved() >= cuda.memory_allocated()
    del d
    assert cuda.memory_allocated() == base_alloc
    assert cuda.memory_reserved() >= base_alloc + 4 * 2**20  # cached, not freed
    cuda.empty_cache()
    assert cuda.memory_reserved() == cuda.memory_allocated()


def test_steady_state_makes_no_cudamalloc(rng):
    shapes = [(64, 128), (128,), (128, 10), (10,), (64, 10), (1000, 33), (3,)]

    def step():
        arrs = [CudaArray.empty(s) for s in shapes]
        arrs += [_C.cuda_binary("add", arrs[0], arrs[1]), _C.cuda_reduce("sum", arrs[5], 0)]
        return arrs

    for _ in range(2):
        step()
    before = cuda.malloc_count()
    for _ in range(20):
        step()
    assert cuda.malloc_count() == before


def test_out_of_memory_is_a_clean_memory_error():
    with pytest.raises(MemoryError, match="tried to allocate") as e:
        CudaArray.empty((1 << 42,))  # 16 TiB
    assert "16.00 TiB" in str(e.value) or "17592186044416 bytes" in str(e.value)
    # the process and the allocator are fine afterwards
    d = CudaArray(np.arange(5, dtype=np.float32))
    np.testing.assert_array_equal(d.numpy(), np.arange(5, dtype=np.float32))
    with pytest.raises(ValueError, match="negative"):
        CudaArray.empty((-1, 3))
