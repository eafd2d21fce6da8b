"""mmengine loads checkpoints under the project's one trust policy (`transfer.checkpoint.reading.read_checkpoint`).

torch >= 2.6 loads with `weights_only=True` by default, and mmengine 0.10.7 calls
`torch.load` without saying otherwise; here its loader for local files is replaced
by `read_checkpoint`, so that every checkpoint the project reads, with any tool,
is trusted or not by the same rule:
- a file we did not write (a model-zoo checkpoint, a `load_from`, a backbone passed
  as --weights) is unpickled weights-only with the allow-list of `read_checkpoint`
  (tensors, containers, numpy data, argparse namespaces, mmengine's HistoryBuffer);
  anything else is refused with a message;
- a file inside a folder registered with `trust_checkpoints_in` (the run's own work
  dir: its training checkpoints, read back on resume, and its converted weights) is
  unpickled in full, as `read_checkpoint(..., trust_pickle=True)` does for a file
  the user vouches for with --trust-pickle.
Tensors come back on the CPU; mmengine copies them to the model's device.
"""
from __future__ import annotations

from pathlib import Path

from transfer.checkpoint.reading import read_checkpoint
from transfer.errors import UserError

_TRUSTED: list[Path] = []


def is_trusted(filename: str | Path) -> bool:
    """Whether `filename` lies inside a folder registered with `trust_checkpoints_in`."""
    path = Path(filename).resolve()
    return any(path.is_relative_to(folder) for folder in _TRUSTED)


def load_local_checkpoint(filename: str, map_location: object = None) -> dict:
    """mmengine's loader for local files: `read_checkpoint`, in full only inside a trusted work dir."""
    try:
        return read_checkpoint(filename, trust_pickle=is_trusted(filename))
    except UserError as e:
        if "--trust-pickle" not in str(e):
            raise
        raise UserError(f"{e} (tools/run_transfer.sh: convert it with tools/convert_ckpt.py --trust-pickle "
                        "--to mmlab and pass the result)") from None


def trust_checkpoints_in(folder: str | Path) -> None:
    """Load checkpoints under `folder` (a run's own work dir) in full, and route mmengine's local loads here."""
    from mmengine.runner.checkpoint import CheckpointLoader

    folder = Path(folder).resolve()
    if folder not in _TRUSTED:
        _TRUSTED.append(folder)
    CheckpointLoader.register_scheme(prefixes="", force=True)(load_local_checkpoint)
