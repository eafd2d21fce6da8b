"""What every torch classification protocol shares on the runner skeleton: its YAML config (overrides,
`--input-size`), torchrun's process group, the frozen backbone on the run's device, and a trial's result
file that a resumed run reads back instead of recomputing."""
from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from transfer.classification.features import PooledBackbone, load_frozen_backbone
from transfer.classification.transforms import eval_resize
from transfer.distributed import Processes, close_processes, init_processes
from transfer.engine.config import read_yaml_config
from transfer.engine.runner import Adapter, Run, say
from transfer.fileio import write_json
from transfer.overrides import Override, apply_overrides

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "classification"


def load_protocol_config(path: str | os.PathLike, overrides: Sequence[str | Override], input_size: int | None,
                         section: str) -> dict[str, Any]:
    """The YAML config at `path` with typed key=value overrides; `--input-size S` sets `section`'s crop to S and
    its resize in the config's proportion (256 / 224 -> round(S * 256 / 224), MoCo's main_lincls)."""
    cfg = apply_overrides(read_yaml_config(path), overrides)
    if input_size is not None:
        part = cfg[section]
        part["resize_size"] = eval_resize(int(input_size), part["resize_size"], part["crop_size"])
        part["crop_size"] = int(input_size)
    return cfg


class TorchAdapter(Adapter):
    """A classification protocol in torch (gloo/NCCL under torchrun): config `configs/classification/NAME.yaml`,
    whose `section` holds the crop and resize that `--input-size` changes."""

    backend = "torch"
    backends = ("torch",)
    weights_format = None  # the backbone is read from any checkpoint format directly
    cpu_distributed = True

    def __init__(self, task: str, config: Path, section: str):
        super().__init__(task)
        self.config, self.section = config, section
        self.procs: Processes | None = None
        self.state: dict[str, Any] | None = None  # what the trials share, made on the first (`prepare`)
        self.max_iters: int | None = None

    def default_config(self) -> Path:
        """The protocol's config in configs/classification/."""
        return self.config

    def setup(self, run: Run) -> None:
        """Join torchrun's process group, if any."""
        self.procs = init_processes(use_gpu=run.gpus > 0)

    def teardown(self) -> None:
        """Leave the process group."""
        close_processes()

    def load_config(self, config_path: Path, overrides: Sequence[str | Override],
                    input_size: int | None) -> dict[str, Any]:
        """The protocol config with the overrides and `--input-size`."""
        return load_protocol_config(config_path, overrides, input_size, self.section)

    def check_overrides(self, config_path: Path, overrides: list[Override]) -> None:
        """The config file loads and takes the overrides."""
        self.load_config(config_path, overrides, None)

    def build_config(self, config_path: Path, run: Run) -> dict[str, Any]:
        """The trial's config (`load_config`, then `adjust`); on the first trial also `prepare`'s shared state."""
        cfg = self.load_config(config_path, run.overrides, run.args.input_size)
        self.max_iters = run.args.max_iters
        self.adjust(cfg, run)
        if self.state is None:
            self.state = self.prepare(cfg, run)
        run.notes += self.state["notes"]
        return cfg

    def adjust(self, cfg: dict[str, Any], run: Run) -> None:
        """The task's checks and edits of its config before `prepare` (none by default)."""

    def prepare(self, cfg: dict[str, Any], run: Run) -> dict[str, Any]:
        """What every trial shares (backbone, datasets, features), with its `notes`, made once per run."""
        raise NotImplementedError

    def frozen_backbone(self, run: Run, arch: str) -> tuple[PooledBackbone, dict[str, Any], bool]:
        """(the frozen pooled backbone on this process's device, checkpoint info, bf16 autocast on); sets run.arch."""
        backbone, info = load_frozen_backbone(run.weights, arch)
        backbone.to(self.procs.device)
        amp = self.procs.device.type == "cuda"
        if amp:
            backbone.to(memory_format=torch.channels_last)
        run.arch = info["arch"]
        return backbone, info, amp


def cached_trial(path: Path, identity: dict[str, Any], resume: bool, procs: Processes,
                 compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """A trial's result dict: read back from `path` when resuming a run of the same `identity`, else computed and
    written there (rank 0) with the identity, so that an interrupted multi-trial run redoes only what is missing."""
    if resume and path.is_file():
        stored = json.loads(path.read_text())
        if stored.get("identity") == json.loads(json.dumps(identity, default=str)):
            say(f"resumed: {path} holds this trial's result")
            return stored["result"]
    result = compute()
    if procs.is_main:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, {"identity": identity, "result": result})
    return result
