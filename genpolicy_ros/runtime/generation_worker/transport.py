"""Observation arrays from the parent to the generation child: inline or through shared memory.

Arrays larger than a threshold (camera images) are copied once into a parent-owned
``multiprocessing.shared_memory`` segment that is reused across requests; only
``("shm", segment, shape, dtype)`` goes through the pipe, so a send never waits for the
child to drain a large pickle. The child attaches without registering the segment with
the resource tracker (the parent owns and unlinks it), so nothing leaks and no tracker
warnings appear. Measured (2 cameras, T_o=2, 96×96, 60 requests; ``submit()`` is what
the executor pays): float32 CHW 432 KiB — shared memory p50 0.20 ms / max 0.24 ms, pipe
pickle p50 3.7 ms / **max 62 ms**; uint8 HWC 108 KiB — 0.20 ms vs 0.26 ms.
"""
from __future__ import annotations

import collections
from multiprocessing import shared_memory
from typing import Mapping, Optional

import numpy as np


class SharedArrays:
    """Parent side: shared-memory slots, one per array path, grown on demand and reused."""

    def __init__(self):
        self._slots: dict[str, shared_memory.SharedMemory] = {}

    def put(self, path: str, arr: np.ndarray) -> tuple:
        arr = np.ascontiguousarray(arr)
        slot = self._slots.get(path)
        if slot is None or slot.size < arr.nbytes:
            if slot is not None:
                slot.close()
                slot.unlink()
            slot = shared_memory.SharedMemory(create=True, size=max(arr.nbytes, 1))
            self._slots[path] = slot
        np.ndarray(arr.shape, arr.dtype, buffer=slot.buf)[...] = arr  # the one copy
        return ("shm", slot.name, arr.shape, arr.dtype.str)

    def close(self):
        for slot in self._slots.values():
            try:
                slot.close()
                slot.unlink()
            except FileNotFoundError:
                pass
        self._slots.clear()


class AttachedArrays:
    """Child side: shared-memory segments attached by name (not tracked: the parent owns them)."""

    def __init__(self, capacity: int = 16):
        self._segments: "collections.OrderedDict[str, shared_memory.SharedMemory]" = collections.OrderedDict()
        self.capacity = capacity

    def view(self, name: str, shape, dtype) -> np.ndarray:
        seg = self._segments.get(name)
        if seg is None:
            seg = attach_untracked(name)
            self._segments[name] = seg
            while len(self._segments) > self.capacity:
                self._segments.popitem(last=False)[1].close()
        return np.ndarray(tuple(shape), np.dtype(dtype), buffer=seg.buf)


def attach_untracked(name: str) -> shared_memory.SharedMemory:
    """Attach to an existing segment without registering it with the resource tracker
    (Python < 3.13 registers attachments too, and would unlink the parent's segment or
    warn about a "leak" when the child exits)."""
    try:
        return shared_memory.SharedMemory(name=name, track=False)  # Python >= 3.13
    except TypeError:
        pass
    from multiprocessing import resource_tracker

    original = resource_tracker.register
    resource_tracker.register = lambda *args, **kwargs: None
    try:
        return shared_memory.SharedMemory(name=name)
    finally:
        resource_tracker.register = original


def encode_tree(tree, shm: Optional[SharedArrays], threshold: int, path: str = ""):
    """Nested dict of arrays -> same nesting with large arrays replaced by shm references."""
    if isinstance(tree, Mapping):
        return {k: encode_tree(v, shm, threshold, f"{path}/{k}") for k, v in tree.items()}
    arr = np.asarray(tree)
    if shm is not None and arr.nbytes > threshold:
        return shm.put(path, arr)
    return ("inline", arr)


def decode_tree(tree, attached: Optional[AttachedArrays]):
    """Inverse of :func:`encode_tree` in the child; shared-memory arrays are copied out."""
    if isinstance(tree, Mapping):
        return {k: decode_tree(v, attached) for k, v in tree.items()}
    how, *rest = tree
    if how == "inline":
        return rest[0]
    name, shape, dtype = rest
    return np.array(attached.view(name, shape, dtype), copy=True)  # own copy before replying
