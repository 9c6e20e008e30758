"""keep_freed_memory: applied through glibc's mallopt where it exists, a clean no-op elsewhere."""
from __future__ import annotations

import ctypes
import platform

import numpy as np
import pytest

from nn_from_scratch.engine import allocator


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="needs glibc")
def test_settings_are_applied_on_glibc_and_allocation_still_works():
    assert allocator.keep_freed_memory() is True
    assert allocator.keep_freed_memory(retain_bytes=1 << 30, grow_bytes=0) is True
    a = np.ones((4096, 1024), dtype=np.float32)  # 16 MiB: now from the heap
    b = a * 2
    del a
    np.testing.assert_array_equal(b[:2, :3], np.full((2, 3), 2, dtype=np.float32))


def test_without_a_c_library_it_reports_false(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("no C library here")

    monkeypatch.setattr(ctypes, "CDLL", refuse)
    assert allocator.keep_freed_memory() is False


@pytest.mark.parametrize("bad", [-1, 1.5, True, "64"])
def test_bad_sizes_are_refused(bad):
    with pytest.raises(ValueError, match="non-negative integer"):
        allocator.keep_freed_memory(retain_bytes=bad)
    with pytest.raises(ValueError, match="grow_bytes"):
        allocator.keep_freed_memory(grow_bytes=bad)
