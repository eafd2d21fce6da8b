"""Reading a checkpoint file safely: no pickled code is ever run without the user's say-so.

The project's one trust policy for checkpoints, used by every reader (the converter,
the runners, mmengine's loader through `transfer.engine.compat`): a file we did not
write is unpickled weights-only with the allow-list below; a file is unpickled in
full only when the user vouches for it (--trust-pickle) or when it is the run's own
checkpoint in its own work dir (`transfer.engine.compat.trust_checkpoints_in`).
"""
from __future__ import annotations

import argparse
import codecs
import collections
import os
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from transfer.errors import UserError

# Plain data that checkpoints written by the usual tools pickle besides tensors: numpy arrays,
# scalars and dtypes (mmengine's `meta`), argparse namespaces (timm, torchvision references).
# Old numpy pickles name `numpy.core`, numpy 2 moved it to `numpy._core`: allow both spellings.
_NUMPY_CORE = np._core.multiarray  # type: ignore[attr-defined]


def _numpy_globals() -> list[Any]:
    """The numpy constructors a numpy-holding pickle needs, under every name numpy 1 and 2 write."""
    out: list[Any] = []
    for name in ("_reconstruct", "scalar"):
        fn = getattr(_NUMPY_CORE, name)
        out += [(fn, f"numpy.core.multiarray.{name}"), (fn, f"numpy._core.multiarray.{name}")]
    frombuffer = np._core.numeric._frombuffer  # type: ignore[attr-defined]  # arrays in pickle protocol 5
    out += [(frombuffer, "numpy.core.numeric._frombuffer"), (frombuffer, "numpy._core.numeric._frombuffer")]
    out += [np.ndarray, (np.ndarray, "numpy.ndarray"), np.dtype, (np.dtype, "numpy.dtype")]
    for name in dir(np.dtypes):
        cls = getattr(np.dtypes, name)
        if isinstance(cls, type) and name.endswith("DType"):
            out += [cls, (cls, f"numpy.dtypes.{name}")]
    return out


def _lazy_globals() -> dict[str, Any]:
    """Harmless classes of optional packages, allowed only when a checkpoint names them (name -> loader of globals)."""
    def history_buffer() -> list[Any]:
        # mmengine's `message_hub` pickles HistoryBuffer objects, whose statistics methods are pickled as
        # getattr(HistoryBuffer, "mean"): allow getattr for that class's public attributes and nothing else.
        from mmengine.logging.history_buffer import HistoryBuffer

        def getattr_of_history_buffer(obj: Any, name: str) -> Any:
            if not (isinstance(obj, type) and issubclass(obj, HistoryBuffer)) or name.startswith("_"):
                raise pickle.UnpicklingError(f"Unsupported global: GLOBAL builtins.getattr on {obj!r}")
            return getattr(obj, name)
        return [HistoryBuffer, (HistoryBuffer, "mmengine.logging.history_buffer.HistoryBuffer"),
                (getattr_of_history_buffer, "builtins.getattr")]
    return {"mmengine.logging.history_buffer.HistoryBuffer": history_buffer}


# Pickle protocol 2 writes an empty bytes object (the data of an empty numpy array) as a call of `bytes()`.
SAFE_GLOBALS: list[Any] = _numpy_globals() + [argparse.Namespace, (bytes, "builtins.bytes")]
# torch names a refused global in one of two ways.
_UNSUPPORTED_GLOBAL = re.compile(r"GLOBAL ([\w.]+)|but got <class '([\w.]+)'>")
_ZIP_MAGIC = b"PK\x03\x04"


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """A plain-pickle reader (detectron2 `.pkl`) that builds only containers and numpy arrays."""

    _allowed = {name: obj for obj, name in (g for g in _numpy_globals() if isinstance(g, tuple))}
    _allowed.update({"_codecs.encode": codecs.encode, "builtins.bytes": bytes,
                     "collections.OrderedDict": collections.OrderedDict})

    def find_class(self, module: str, name: str) -> Any:
        """The allowed global of that name, or an UnpicklingError naming it."""
        key = f"{module}.{name}"
        if key in self._allowed:
            return self._allowed[key]
        raise pickle.UnpicklingError(f"Unsupported global: GLOBAL {key}")


def read_plain_pickle(path: str | os.PathLike) -> Any:
    """Unpickle a plain pickle (a detectron2 `.pkl`) building only containers and numpy arrays."""
    with open(path, "rb") as f:
        return _NumpyOnlyUnpickler(f).load()


def read_checkpoint(path: str | os.PathLike, trust_pickle: bool = False) -> Any:
    """Load a checkpoint file (torch zip or legacy file, or a plain pickle such as a detectron2 `.pkl`) onto the CPU.

    Only tensors, containers, numpy data and argparse namespaces are built; any other
    pickled object is refused with a UserError unless `trust_pickle` (the file is trusted).
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such file")
    if path.is_dir():
        raise UserError(f"{path} is a directory; give the checkpoint file inside it")
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror or e}") from None
    if not head:
        raise UserError(f"{path} is empty; copy or download the checkpoint again")
    if len(head) >= 9 and int.from_bytes(head[:8], "little") < 100_000_000 and head[8:9] == b"{":
        raise UserError(f"{path} is a safetensors file, which this tool does not read; "
                        "give the .pth/.pth.tar checkpoint instead")
    if head.startswith(_ZIP_MAGIC):
        verify_archive(path)
        return _torch_load(path, trust_pickle)
    # Not a zip: either torch's legacy format (a pickle stream that starts with its magic number)
    # or a plain pickle (detectron2 .pkl).
    if head[:1] != b"\x80":
        raise UserError(f"{path} is not a checkpoint (neither a torch file nor a pickle); "
                        "give the .pth/.pkl file the pretraining wrote")
    try:
        with open(path, "rb") as f:
            first = pickle.load(f) if trust_pickle else _NumpyOnlyUnpickler(f).load()  # noqa: S301 -- trusted
    except Exception as e:  # noqa: BLE001 -- whatever a broken pickle raises, the user gets one line
        raise UserError(_pickle_problem(path, e)) from None
    if isinstance(first, int) and first == torch.serialization.MAGIC_NUMBER:
        return _torch_load(path, trust_pickle)
    return first


def verify_archive(path: str | os.PathLike) -> None:
    """Raise UserError unless a zip-format torch checkpoint is whole: its directory, and every entry's CRC-32.

    torch.load checks neither, so a flipped byte inside a tensor would load as a wrong weight.
    Costs one more read of the file (0.15 s for a 100 MB ResNet-50, page cache warm). Files of other formats
    (torch's legacy format, plain pickles) carry no checksums and pass unchecked.
    """
    path = Path(path)
    again = "copy or download it again"
    with open(path, "rb") as f:
        if f.read(len(_ZIP_MAGIC)) != _ZIP_MAGIC:
            return
    if not zipfile.is_zipfile(path):
        raise UserError(f"{path} is truncated or corrupt (its zip directory is missing); {again}")
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()  # reads every entry and compares it with its CRC-32
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, NotImplementedError) as e:
        reason = (e.strerror if isinstance(e, OSError) and e.strerror else str(e)) or type(e).__name__
        raise UserError(f"{path} is truncated or corrupt ({reason}); {again}") from None
    if bad is not None:
        raise UserError(f"{path} is corrupt: entry {bad} does not match its CRC-32 checksum (damaged bytes); {again}")


def _refused_global(message: str) -> str | None:
    """The name of the global a safe load refused, from its error message."""
    match = _UNSUPPORTED_GLOBAL.search(message)
    return (match.group(1) or match.group(2)) if match else None


def _pickle_problem(path: Path, e: BaseException) -> str:
    """One line saying why a pickle could not be read: truncated, refused object, or garbage."""
    msg = str(e)
    if isinstance(e, EOFError) or "truncated" in msg or "ran out of input" in msg.lower():
        return f"{path} is truncated or corrupt ({type(e).__name__}); copy or download it again"
    name = _refused_global(msg)
    if name:
        return (f"{path} holds a pickled Python object ({name}) that a safe load refuses; "
                "if you trust this file, rerun with --trust-pickle")
    return f"{path} is not a readable checkpoint ({type(e).__name__}: {msg.splitlines()[0][:120] if msg else ''})"


def _torch_load(path: Path, trust_pickle: bool) -> Any:
    """torch.load with weights_only=True and the allow-list; a refusal or a broken file becomes a UserError."""
    if trust_pickle:
        try:
            return torch.load(path, map_location="cpu", weights_only=False)
        except Exception as e:  # noqa: BLE001 -- any failure of a broken file must be one line
            raise UserError(_torch_problem(path, e)) from None
    extra: list[Any] = []
    lazy = _lazy_globals()
    while True:
        try:
            with torch.serialization.safe_globals(SAFE_GLOBALS + extra):
                return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001
            name = _refused_global(str(e))
            if name in lazy:
                try:
                    extra += lazy.pop(name)()
                    continue
                except ImportError:
                    pass
            raise UserError(_torch_problem(path, e)) from None


def _torch_problem(path: Path, e: BaseException) -> str:
    """One line for a torch.load failure."""
    msg = str(e)
    name = _refused_global(msg)
    if name:
        return (f"{path} holds a pickled Python object ({name}) that a safe load (weights_only) refuses; "
                "if you trust this file, rerun with --trust-pickle")
    low = msg.lower()
    if any(s in low for s in ("central directory", "truncat", "unexpected end", "eof", "failed reading",
                               "invalid header", "file read failed")):
        return f"{path} is truncated or corrupt; copy or download it again"
    first = msg.strip().splitlines()[0][:160] if msg.strip() else type(e).__name__
    return f"{path} could not be read as a torch checkpoint ({first}); copy or download it again"


def describe_object(obj: Any) -> str:
    """A short description of what a file held, for error messages."""
    if isinstance(obj, dict):
        keys = list(obj)[:5]
        return f"a dict with keys {', '.join(map(str, keys))}{', ...' if len(obj) > 5 else ''}"
    return f"a {type(obj).__name__}"


__all__ = ["read_checkpoint", "read_plain_pickle", "SAFE_GLOBALS", "describe_object", "verify_archive"]
