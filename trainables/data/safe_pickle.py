"""A restricted, bounded unpickler for the one pickle format we read: CIFAR-10's python batches.

The published batches are pickled dicts of str/bytes keys, lists of ints and strings, and one
numpy uint8 array. Building those needs dicts, lists, strings and bytes (pickle opcodes, no
lookup) plus a handful of globals: numpy's array reconstruction, `numpy.ndarray`,
`numpy.dtype`, and `_codecs.encode` (how protocol-2 pickles spell bytes). Every other global
(os.system, builtins.eval, a class with a __reduce__ payload, ...) is refused before anything
is called, so a crafted file cannot run code.

Refusing code is not enough: the allowed globals can allocate. `ndarray(shape)` or
`_reconstruct(ndarray, shape, ...)` builds an array of any shape from a few bytes, `bytes(n)`
builds n zeros, and a memoised string fed to `_codecs.encode` a thousand times is a thousand
copies. So every allowed call and every array `__setstate__` is charged, before it runs, to a
byte budget proportional to the file's size (`MEMORY_PER_FILE_BYTE` x size + `MEMORY_SLACK`); the
file itself is size-capped by the caller and read whole into memory first (a length prefix
claiming gigabytes then reads only what the file holds). A file over budget is refused as
`PickleTooLarge` with nothing big built.
"""
from __future__ import annotations

import importlib
import io
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np

# (module, name) -> (module to import instead, name); numpy.core is numpy 1's spelling of numpy._core.
ALLOWED_GLOBALS: dict[tuple[str, str], tuple[str, str]] = {
    ("numpy.core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"): ("numpy._core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"): ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"): ("numpy._core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"): ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"): ("numpy", "ndarray"),
    ("numpy", "dtype"): ("numpy", "dtype"),
    ("_codecs", "encode"): ("_codecs", "encode"),
    ("builtins", "bytes"): ("builtins", "bytes"),
    ("builtins", "bytearray"): ("builtins", "bytearray"),
    ("builtins", "list"): ("builtins", "list"),
    ("builtins", "dict"): ("builtins", "dict"),
}

# Bytes the allowed calls may build per byte of file: a protocol-2 array costs 2 (the latin-1
# string encoded to bytes, then copied into the array); anything beyond that is amplification.
MEMORY_PER_FILE_BYTE = 2
MEMORY_SLACK = 1 << 20
POINTER = 8  # bytes a list/dict slot costs


class UnsafePickle(pickle.UnpicklingError):
    """The file asks for a global outside ALLOWED_GLOBALS."""


class PickleTooLarge(UnsafePickle):
    """The file asks the allowed globals for more memory than a file of its size can hold."""


def _shape_elements(shape: Any) -> int:
    if isinstance(shape, int):
        shape = (shape,)
    if not isinstance(shape, tuple) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise UnsafePickle(f"array shape {shape!r:.80} is not a tuple of sizes")
    n = 1
    for d in shape:
        n *= d
    return n


def _dtype(spec: Any) -> np.dtype:
    try:
        dt = spec if isinstance(spec, np.dtype) else np.dtype(spec)
    except Exception as err:  # noqa: BLE001 - any bad spec is a bad file
        raise UnsafePickle(f"dtype {spec!r:.80} is not a plain dtype ({type(err).__name__})") from None
    if dt.hasobject:
        raise UnsafePickle(f"dtype {dt} holds Python objects: not part of the CIFAR-10 batch format")
    return dt


class _Budget:
    """Bytes the allowed calls may still build; charge() before each allocation."""

    def __init__(self, limit: int, path: Path):
        self.left, self.limit, self.path = limit, limit, path

    def charge(self, nbytes: int, what: str) -> None:
        if nbytes > self.left:
            raise PickleTooLarge(f"{what} asks for {nbytes:,} bytes, more than a {self.path.name} "
                                 f"file of its size can hold (budget {self.limit:,} bytes)")
        self.left -= nbytes


def _guarded(budget: _Budget, module: str, name: str, target: Any) -> Any:
    """The allowed global `target`, charging the budget before it allocates."""
    full = f"{module}.{name}"

    def length(obj: Any) -> int:
        if isinstance(obj, int):
            return max(obj, 0)
        try:
            return len(obj)
        except TypeError:
            raise UnsafePickle(f"{full} called on a {type(obj).__name__}") from None

    if name == "_reconstruct":
        array_type = _guarded(budget, "numpy", "ndarray", np.ndarray)

        def call(subtype, shape, dtype_spec):
            # dtype_spec is the base type code; the array's real dtype comes with __setstate__
            budget.charge(_shape_elements(shape) * _dtype(dtype_spec).itemsize, full)
            return target(array_type, shape, dtype_spec)
        return call
    if name == "ndarray":
        return type("BoundedArray", (np.ndarray,), {
            "__new__": lambda cls, shape, dtype=float, *args, **kwargs: _new_array(budget, cls, shape, dtype,
                                                                                     *args, **kwargs),
            "__setstate__": lambda self, state: _setstate(budget, self, state)})
    if name == "_frombuffer":
        def call(buf, dtype_spec, shape, order):
            dt = _dtype(dtype_spec)
            if _shape_elements(shape) * dt.itemsize != length(buf):
                raise UnsafePickle(f"{full}: {length(buf)} bytes do not fill shape {shape!r:.80} of {dt}")
            budget.charge(length(buf), full)
            return target(buf, dt, shape, order)
        return call
    if name == "scalar":
        def call(dtype_spec, *args):
            dt = _dtype(dtype_spec)
            budget.charge(dt.itemsize + sum(length(a) for a in args if isinstance(a, (str, bytes))), full)
            return target(dt, *args)
        return call
    if name == "encode":
        def call(obj, encoding="utf-8", *args):
            budget.charge(length(obj) * (1 if str(encoding).replace("-", "") in ("latin1", "ascii") else 4), full)
            return target(obj, encoding, *args)
        return call
    if name in ("bytes", "bytearray"):
        def call(*args):
            budget.charge(length(args[0]) * (4 if args and isinstance(args[0], str) else 1) if args else 0, full)
            return target(*args)
        return call
    if name == "dtype":
        def call(spec, *args):
            if not isinstance(spec, str) or len(spec) > 16:  # 'u1', '<i8', 'V8': a type code, not a layout
                raise UnsafePickle(f"{full} called with {spec!r:.80}: not a type code")
            return target(spec, *args)
        return call
    if name in ("list", "dict"):
        def call(*args):
            budget.charge(POINTER * 3 * (length(args[0]) if args else 0), full)
            return target(*args)
        return call
    raise UnsafePickle(f"refused to load global {full}: no size guard for it")  # pragma: no cover


def _new_array(budget: _Budget, cls, shape, dtype=float, *args, **kwargs):
    if args or kwargs:  # buffer=, offset=, strides=: views onto memory the file does not own
        raise UnsafePickle("numpy.ndarray called with a buffer or strides: not part of the CIFAR-10 batch format")
    dt = _dtype(dtype)
    budget.charge(_shape_elements(shape) * dt.itemsize, "numpy.ndarray")
    return np.ndarray.__new__(cls, shape, dt)


def _setstate(budget: _Budget, array: np.ndarray, state: Any) -> None:
    """ndarray.__setstate__ after checking the data fills exactly the declared shape (charged once)."""
    if not isinstance(state, tuple) or len(state) not in (4, 5):
        raise UnsafePickle("array state is not numpy's (version, shape, dtype, fortran, data)")
    shape, dtype_spec, data = state[-4], state[-3], state[-1]
    dt = _dtype(dtype_spec)
    if not isinstance(data, (bytes, bytearray, str)):
        raise UnsafePickle(f"array data is a {type(data).__name__}, not bytes")
    if _shape_elements(shape) * dt.itemsize != len(data):
        raise UnsafePickle(f"array data of {len(data):,} bytes does not fill shape {shape!r:.80} of {dt}")
    budget.charge(len(data), "numpy array data")
    np.ndarray.__setstate__(array, state)


class RestrictedUnpickler(pickle.Unpickler):
    """pickle.Unpickler whose find_class only returns ALLOWED_GLOBALS, each charged to a byte budget."""

    def __init__(self, file, *, budget: _Budget, **kwargs):
        super().__init__(file, **kwargs)
        self.budget = budget

    def find_class(self, module: str, name: str) -> Any:
        if module == "__builtin__":  # Python 2's name (protocol <= 2 pickles)
            module = "builtins"
        target = ALLOWED_GLOBALS.get((module, name))
        if target is None:
            raise UnsafePickle(f"refused to load global {module}.{name}: not part of the CIFAR-10 batch format")
        return _guarded(self.budget, module, name, getattr(importlib.import_module(target[0]), target[1]))


def _plain(obj: Any) -> Any:
    """The BoundedArray subclass back to a plain ndarray (a view, no copy) in the top-level dict."""
    if isinstance(obj, np.ndarray) and type(obj) is not np.ndarray:
        return obj.view(np.ndarray)
    if isinstance(obj, dict):
        return {k: (v.view(np.ndarray) if isinstance(v, np.ndarray) and type(v) is not np.ndarray else v)
                for k, v in obj.items()}
    return obj


def load_restricted(path: Path, max_file_bytes: int | None = None) -> Any:
    """Unpickle `path` allowing only the CIFAR-10 format's globals (latin1 for Python 2 strings),
    with every allocation they make bounded by the file's size.

    Args:
        max_file_bytes: refuse a larger file before reading it (None: no cap beyond the budget).

    Raises:
        UnsafePickle: the file references any other global (nothing of it has run).
        PickleTooLarge: the file is larger than max_file_bytes, or asks for more memory than its size allows.
        pickle.UnpicklingError, EOFError, ValueError, ...: the file is not a valid pickle.
    """
    path = Path(path)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if max_file_bytes is not None and size > max_file_bytes:
            raise PickleTooLarge(f"{path.name} is {size:,} bytes; a file of this format is at most "
                                 f"{max_file_bytes:,}")
        raw = f.read(size + 1)
    if max_file_bytes is not None and len(raw) > max_file_bytes:  # grew while we looked
        raise PickleTooLarge(f"{path.name} is over {max_file_bytes:,} bytes")
    budget = _Budget(MEMORY_PER_FILE_BYTE * len(raw) + MEMORY_SLACK, path)
    return _plain(RestrictedUnpickler(io.BytesIO(raw), budget=budget, encoding="latin1").load())
