"""A restricted unpickler for the one pickle format we read: CIFAR-10's python batches.

The published batches are pickled dicts of str/bytes keys, lists of ints and strings, and one
numpy uint8 array. Building those needs dicts, lists, strings and bytes (pickle opcodes, no
lookup) plus a handful of globals: numpy's array reconstruction, `numpy.ndarray`,
`numpy.dtype`, and `_codecs.encode` (how protocol-2 pickles spell bytes). Every other global
(os.system, builtins.eval, a class with a __reduce__ payload, ...) is refused before anything
is called, so a crafted file cannot run code.
"""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

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


class UnsafePickle(pickle.UnpicklingError):
    """The file asks for a global outside ALLOWED_GLOBALS."""


class RestrictedUnpickler(pickle.Unpickler):
    """pickle.Unpickler whose find_class only returns ALLOWED_GLOBALS."""

    def find_class(self, module: str, name: str) -> Any:
        if module == "__builtin__":  # Python 2's name (protocol <= 2 pickles)
            module = "builtins"
        target = ALLOWED_GLOBALS.get((module, name))
        if target is None:
            raise UnsafePickle(f"refused to load global {module}.{name}: not part of the CIFAR-10 batch format")
        import importlib

        return getattr(importlib.import_module(target[0]), target[1])


def load_restricted(path: Path) -> Any:
    """Unpickle `path` allowing only the CIFAR-10 format's globals (latin1 for Python 2 strings).

    Raises:
        UnsafePickle: the file references any other global (nothing of it has run).
        pickle.UnpicklingError, EOFError, ValueError, ...: the file is not a valid pickle.
    """
    with open(path, "rb") as f:
        return RestrictedUnpickler(f, encoding="latin1").load()
