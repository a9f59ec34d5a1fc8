"""Host-side pieces of the lab launcher that need no VM."""

from __future__ import annotations

import importlib.util
import os

import pytest

import dmpath.daemon.engine
from dmpath.lab import vm


def test_precompile_writes_bytecode_the_guest_can_use() -> None:
    source = dmpath.daemon.engine.__file__
    assert source is not None
    cached = importlib.util.cache_from_source(source)
    if os.path.exists(cached):
        os.remove(cached)
    vm.precompile_project()
    assert os.path.exists(cached)
    # the header records the source's mtime and size: Python accepts it for this source
    with open(cached, "rb") as fh:
        header = fh.read(16)
    st = os.stat(source)
    assert int.from_bytes(header[8:12], "little") == int(st.st_mtime) & 0xFFFFFFFF
    assert int.from_bytes(header[12:16], "little") == st.st_size & 0xFFFFFFFF


@pytest.mark.parametrize("memory", ["2G", "4096M"])
def test_memory_notation_accepted(memory: str) -> None:
    assert vm.check_memory(memory) == memory
