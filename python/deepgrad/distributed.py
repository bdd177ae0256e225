"""Data-parallel training over MPI (mpi4py), on deepgrad's flat gradient arena.

    import deepgrad.distributed as dist
    dist.init()                                   # rank(), world_size()
    dist.broadcast_parameters(model)              # every rank starts from rank 0's weights
    for xb, yb in data.batches(X, y, 64, seed=0, rank=dist.rank(), world_size=dist.world_size()):
        opt.zero_grad()
        loss = losses.cross_entropy(model(xb), yb)      # the mean over this rank's share
        loss.backward()
        dist.allreduce_gradients(model, count=len(xb)) # now the full batch's mean gradient
        opt.step()                                      # identical on every rank
    dist.save_on_rank0(model.state_dict(), "model.dg")

Run with ``mpiexec -n 4 python train.py``. Set-up: ``pip install 'deepgrad[mpi]'`` (mpi4py and
the MPICH wheel: no system MPI needed). mpi4py is imported on the first call that needs it, never
by ``import deepgrad``.

All gradients of a model live in one flat buffer (``model.arena.grads``), so the gradient
all-reduce is ONE in-place ``Allreduce`` of that buffer (plus one of a single count when the
ranks' shares differ). With ``count``, each rank scales its mean gradient by its share of the
batch before the sum, so uneven shares (the last batch of an epoch) still give exactly the
mean gradient over the whole batch. Afterwards the gradients are identical on every rank:
``clip_grad_norm_`` clips by the global norm, and a GradientMonitor on rank 0 records the
all-reduced gradients (call ``monitor.step`` after ``allreduce_gradients``).

CUDA models: the arena is staged through a host buffer kept between steps (one device-to-host
and one host-to-device copy per step). A CUDA-aware MPI could reduce the device buffer in place
instead (mpi4py accepts objects with ``__cuda_array_interface__``); the pip MPICH build is not
CUDA-aware, so deepgrad does not rely on it.

Errors: ``init()`` installs an exception hook, so an uncaught exception on any rank prints
``deepgrad.distributed: rank R failed: ...`` and aborts the whole job (``MPI_Abort``) instead of
leaving the other ranks waiting in a collective forever.
"""
from __future__ import annotations

import sys

import numpy as np

from .backend import backend_of

__all__ = ["init", "is_initialized", "rank", "world_size", "barrier", "broadcast_parameters",
           "allreduce_gradients", "DataParallel", "save_on_rank0", "abort"]

_STATE = {"comm": None, "hook": False, "staging": None}


def _mpi():
    try:
        from mpi4py import MPI
    except ImportError:
        raise ImportError("deepgrad.distributed needs MPI: pip install 'deepgrad[mpi]' (mpi4py "
                          "and the MPICH wheel)") from None
    return MPI


def init(comm=None, abort_on_error: bool = True):
    """Start (or join) MPI and use ``comm`` (default COMM_WORLD). Returns (rank, world size).
    With ``abort_on_error`` an uncaught exception on any rank aborts every rank."""
    MPI = _mpi()
    _STATE["comm"] = comm if comm is not None else MPI.COMM_WORLD
    if abort_on_error and not _STATE["hook"]:
        def hook(tp, value, tb):
            import traceback
            text = "".join(traceback.format_exception(tp, value, tb))
            abort(f"{tp.__name__}: {value}", detail=text)
        sys.excepthook = hook
        _STATE["hook"] = True
    return rank(), world_size()


def is_initialized() -> bool:
    return _STATE["comm"] is not None


def _comm():
    if _STATE["comm"] is None:
        init()
    return _STATE["comm"]


def rank() -> int:
    return _comm().Get_rank()


def world_size() -> int:
    return _comm().Get_size()


def barrier() -> None:
    _comm().Barrier()


def abort(message: str = "", code: int = 1, detail: str = "") -> None:
    """Print which rank failed (and ``detail``, e.g. the traceback) and abort every rank of the
    job. Written with one unbuffered write to stderr before MPI_Abort, which can stop the
    launcher from forwarding output that is still on its way."""
    import os
    comm = _comm()
    text = (f"deepgrad.distributed: rank {comm.Get_rank()} of {comm.Get_size()} failed"
            f"{': ' + message if message else ''}; aborting all ranks\n{detail}")
    try:
        sys.stderr.flush()
        os.write(2, text.encode("utf-8", "replace"))
    except OSError:
        pass
    time_to_forward = 0.2   # let the launcher's output forwarding drain before the abort
    import time
    time.sleep(time_to_forward)
    comm.Abort(code)


def _host(be, a):
    """(a host numpy view or staging copy of backend array a, write-back function)."""
    if be.HOST_MEMORY:
        return a, None
    st = _STATE["staging"]
    host = be.to_numpy(a)
    if st is None or st.shape != host.shape or st.dtype != host.dtype:
        st = _STATE["staging"] = np.empty_like(host)
    np.copyto(st, host)
    return st, (lambda: be.copy_(a, be.from_numpy(st)))


def _arena(model):
    arena = getattr(model, "arena", None)
    if arena is None:
        raise ValueError("deepgrad.distributed: the model has no parameters (or has not been "
                         "laid out); call it once or pass a model with parameters")
    return arena


def _layout(model, arena) -> tuple:
    """What every rank's model must share for the broadcast and the all-reduce: the arena's
    size, dtype and a checksum of its segment offsets, and the buffers' names, shapes, dtypes."""
    import zlib
    bufs = []
    for name, b in model.named_buffers():
        d = b.data if hasattr(b, "data") else b
        bufs.append(f"{name}:{tuple(getattr(d, 'shape', ()))}:{getattr(d, 'dtype', '?')}")
    return (int(arena.params.size), str(arena.params.dtype),
            zlib.crc32(np.ascontiguousarray(arena.offsets, dtype=np.int64).tobytes()),
            zlib.crc32(";".join(bufs).encode()))


def broadcast_parameters(model, root: int = 0) -> None:
    """Copy rank ``root``'s parameters (one Bcast of the arena) and buffers (running
    statistics) to every rank. First checks (one small allgather) that every rank built the
    same model: a rank whose layout differs raises on every rank, naming the rank and both
    layouts, instead of MPI failing deep inside the broadcast on some ranks only."""
    comm = _comm()
    arena = _arena(model)
    mine = _layout(model, arena)
    every = comm.allgather(mine)
    if not 0 <= root < len(every):
        raise ValueError(f"broadcast_parameters: root {root} is not a rank of this job "
                         f"(0..{len(every) - 1})")
    odd = [r for r, lay in enumerate(every) if lay != every[root]]
    if odd:
        r = odd[0]

        def say(lay):
            return f"{lay[0]} parameters of {lay[1]}"
        what = ("the same parameter count and dtype but other layer shapes or buffers"
                if every[r][:2] == every[root][:2] else
                f"{say(every[r])} against {say(every[root])}")
        raise ValueError(f"broadcast_parameters: the model on rank {r} differs from rank "
                         f"{root}'s ({what}); every rank must build the same model (layers, "
                         "sizes, dtype) before the broadcast")
    buf, back = _host(arena.be, arena.params)
    comm.Bcast(buf, root=root)
    if back:
        back()
    for _, b in model.named_buffers():
        data = b.data if hasattr(b, "data") else b
        be = backend_of(data)
        if be is None:
            continue
        if be.HOST_MEMORY:
            if not data.flags.c_contiguous:
                raise ValueError("broadcast_parameters: a buffer is not contiguous")
            comm.Bcast(data, root=root)
        else:
            host, wb = _host(be, data)
            comm.Bcast(host, root=root)
            wb()


def allreduce_gradients(model, count: int | None = None) -> None:
    """Make every rank's gradients the mean over all ranks' data, in one in-place Allreduce of
    the gradient arena. ``count``: the number of samples this rank's loss averaged over (when
    the ranks' shares of a batch differ, e.g. the last batch); without it every rank counts the
    same. A rank with no sample this step passes count=0 (after zero_grad)."""
    MPI = _mpi()
    comm = _comm()
    arena = _arena(model)
    size = comm.Get_size()
    buf, back = _host(arena.be, arena.grads)
    if count is None:
        scale = 1.0 / size
        comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
        buf *= scale
    else:
        if isinstance(count, bool) or int(count) != count or count < 0:
            raise ValueError(f"allreduce_gradients: count must be an int >= 0, got {count!r}")
        total = comm.allreduce(int(count), op=MPI.SUM)
        if total == 0:
            raise ValueError("allreduce_gradients: no rank had a sample (every count is 0)")
        if count != total:
            buf *= count / total
        comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
    if back:
        back()


class DataParallel:
    """The model, called as usual, plus ``allreduce(count=None)`` (allreduce_gradients) and
    ``broadcast()``; the wrapped model's parameters are broadcast from rank 0 on creation."""

    def __init__(self, model, root: int = 0):
        self.module = model
        self.root = root
        if getattr(model, "arena", None) is None:
            raise ValueError("DataParallel: the model has no parameters")
        broadcast_parameters(model, root)

    def __call__(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    def allreduce(self, count: int | None = None) -> None:
        allreduce_gradients(self.module, count)

    def broadcast(self) -> None:
        broadcast_parameters(self.module, self.root)

    def __getattr__(self, name):
        return getattr(self.module, name)


def save_on_rank0(obj, path, **kwargs) -> None:
    """deepgrad.save on rank 0 only, then a barrier (no rank reads a half-written file)."""
    from .serialization import save
    if rank() == 0:
        save(obj, path, **kwargs)
    barrier()
