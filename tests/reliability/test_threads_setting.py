"""Issue 10, items 3 and 9: set_num_threads is one process-wide setting (kernels called from any
Python thread fork at most that many threads), validated (1 to 4 x cores, an int), and a value
the machine cannot honour is refused instead of OpenMP exiting the process."""
import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import deepgrad as dg
from deepgrad import _C


@pytest.fixture
def restore_threads():
    n = dg.get_num_threads()
    yield
    dg.set_num_threads(n)


def _in_thread(fn):
    out = []
    t = threading.Thread(target=lambda: out.append(fn()))
    t.start()
    t.join()
    return out[0]


def test_setting_applies_to_other_threads(restore_threads):
    dg.set_num_threads(1)
    assert _in_thread(dg.get_num_threads) == 1
    dg.set_num_threads(3)
    assert _in_thread(dg.get_num_threads) == 3
    assert dg.build_info()["threads"] == 3


def test_kernels_in_another_thread_use_the_setting(restore_threads):
    """A large GEMM from a new thread gives the same bits at 1 thread as on the main thread at 1
    thread (the team size decides the split), and differs in nothing but speed."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((600, 700)).astype(np.float32)
    b = rng.standard_normal((700, 500)).astype(np.float32)
    dg.set_num_threads(1)
    ref = _C.gemm(a, b)
    got = _in_thread(lambda: _C.gemm(a, b))
    np.testing.assert_array_equal(got, ref)


def test_fork_size_seen_from_another_thread(restore_threads):
    """Run in a child so that OMP's thread pool is fresh: a kernel called from a new Python thread
    after set_num_threads(1) must not start OpenMP worker threads (the process keeps 2 threads:
    main + the caller)."""
    code = textwrap.dedent("""
        import os, threading, numpy as np, deepgrad as dg
        from deepgrad import _C
        dg.set_num_threads(1)
        a = np.ones((800, 800), np.float32)
        seen = []
        def work():
            _C.gemm(a, a)
            seen.append(len(os.listdir('/proc/self/task')))
        t = threading.Thread(target=work); t.start(); t.join()
        print(seen[0])
    """)
    if not os.path.isdir("/proc/self/task"):
        pytest.skip("needs /proc to count threads")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, OMP_NUM_THREADS="4"))
    assert r.returncode == 0, r.stderr
    assert int(r.stdout.strip()) <= 2 + 1  # main, the worker, at most one helper of numpy/BLAS


@pytest.mark.parametrize("bad, exc", [(0, ValueError), (-1, ValueError), (100000, ValueError),
                                      (2.5, TypeError), (True, TypeError), ("2", TypeError),
                                      (None, TypeError)])
def test_bad_values_are_refused(restore_threads, bad, exc):
    before = dg.get_num_threads()
    with pytest.raises(exc, match="set_num_threads"):
        dg.set_num_threads(bad)
    assert dg.get_num_threads() == before


def test_limit_is_four_per_core(restore_threads):
    lim = _C.max_num_threads()
    assert lim == 4 * (os.cpu_count() or 1)
    dg.set_num_threads(lim)
    assert dg.get_num_threads() == lim
    with pytest.raises(ValueError, match=f"between 1 and {lim}"):
        dg.set_num_threads(lim + 1)


def test_thread_creation_failure_is_an_error_not_an_exit():
    """Under RLIMIT_NPROC the probe cannot start the threads: RuntimeError, setting unchanged,
    and the process goes on to run a large kernel."""
    resource = pytest.importorskip("resource")
    if os.geteuid() == 0:
        # root ignores RLIMIT_NPROC; a thread stack larger than the address space left fails
        # thread creation for root too
        limit = "resource.setrlimit(resource.RLIMIT_AS, (cur + (20 << 20),) * 2)"
    else:
        limit = "resource.setrlimit(resource.RLIMIT_NPROC, (1, 1))"
    code = textwrap.dedent(f"""
        import resource, threading, numpy as np, deepgrad as dg
        from deepgrad import _C
        dg.set_num_threads(1)
        a = np.ones((700, 700), np.float32)
        _C.gemm(a, a)
        cur = int(next(l for l in open('/proc/self/status') if l.startswith('VmSize')).split()[1]) * 1024
        {limit}
        try:
            dg.set_num_threads(8)
            print("ACCEPTED", dg.get_num_threads())
        except RuntimeError as e:
            print("REFUSED", e, dg.get_num_threads())
        _C.gemm(a, a)
        print("ALIVE")
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"exit {r.returncode}: {r.stdout} {r.stderr[-1500:]}"
    assert "ALIVE" in r.stdout
    assert "REFUSED" in r.stdout and "threads could be started" in r.stdout
    assert r.stdout.split()[-2] == "1"  # the setting is unchanged
