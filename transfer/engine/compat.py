"""Loading checkpoints in mmengine under torch's weights-only unpickler, deliberately.

torch >= 2.6 loads with `weights_only=True` by default, and mmengine 0.10.7 calls
`torch.load` without saying otherwise. Two kinds of file reach that call:
- checkpoints to initialise from (our converted ones, model-zoo ones): loaded
  weights-only, with numpy arrays, scalars and dtypes allow-listed (plain data,
  which model-zoo `meta` often holds); anything else is refused with a message;
- the run's own training checkpoints, read back on resume: mmengine pickles its
  message hub's `HistoryBuffer` with its statistics functions
  (`getattr(HistoryBuffer, 'min')`), which no safe allow-list can admit. These
  files were written by this very run into its work dir, so files inside a
  folder registered with `trust_checkpoints_in` load with `weights_only=False`;
  nothing outside those folders ever does.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from transfer.errors import UserError

_TRUSTED: list[Path] = []


def numpy_safe_globals() -> list:
    """The numpy types and reconstructors that pickled arrays and scalars refer to (numpy 1 and 2 names)."""
    from numpy._core.multiarray import _reconstruct, scalar

    dtypes = [type(np.dtype(t)) for t in "bBhHiIlLqQefdg?FDUSOV"]
    scalars = [np.bool_, np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.int64, np.uint64,
               np.float16, np.float32, np.float64, np.complex64, np.complex128, np.str_, np.bytes_]
    return [(_reconstruct, "numpy.core.multiarray._reconstruct"), _reconstruct,
            (scalar, "numpy.core.multiarray.scalar"), scalar, np.ndarray, np.dtype, *dtypes, *scalars]


def load_local_checkpoint(filename: str, map_location=None) -> dict:
    """mmengine's loader for local files: weights-only, except inside a trusted work dir."""
    path = Path(filename).resolve()
    if any(path.is_relative_to(folder) for folder in _TRUSTED):
        return torch.load(path, map_location=map_location, weights_only=False)  # this run's own checkpoint
    if not path.is_file():
        raise UserError(f"checkpoint {filename} does not exist")
    try:
        with torch.serialization.safe_globals(numpy_safe_globals()):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[-1][:200]
        raise UserError(f"{filename} holds objects that weights-only loading refuses ({first}); "
                        "convert it with tools/convert_ckpt.py --to mmlab and pass the result") from e


def trust_checkpoints_in(folder: str | Path) -> None:
    """Load checkpoints under `folder` (a run's own work dir) in full, and route mmengine's local loads here."""
    from mmengine.runner.checkpoint import CheckpointLoader

    folder = Path(folder).resolve()
    if folder not in _TRUSTED:
        _TRUSTED.append(folder)
    CheckpointLoader.register_scheme(prefixes="", force=True)(load_local_checkpoint)
