"""The mmengine adapter of the runner skeleton (`transfer.engine.runner`), shared by mmdet and mmseg.

A trial: the protocol config with the typed overrides -> the task's edits (`prepare`: data,
weights, depth, input size) -> the overrides again (what the user asked for wins) -> devices and
schedule -> train and test with mmengine's Runner (resuming from the trial's last checkpoint).
A task supplies only its config edits (`prepare`) and its metric names (`summarize`).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmengine.config import Config

from transfer.data import check_command
from transfer.data.mm_loading import guard_pipelines
from transfer.engine.backbone import fit_backbone
from transfer.engine.compat import trust_checkpoints_in
from transfer.engine.config import load_mm_config
from transfer.engine.devices import adapt_to_devices
from transfer.engine.internals import shutdown_loader_workers
from transfer.engine.runner import Adapter, Run
from transfer.engine.rng_state import add_rng_state_hook
from transfer.engine.schedule import shorten_schedule
from transfer.overrides import Override, apply_overrides


@dataclass(frozen=True)
class ConfigEdits:
    """A task's edits of its protocol config, one function each (`detection.mmdet_config`, `segmentation.config`)."""

    set_data_root: Callable[[Config, Path], None]
    set_backbone_depth: Callable[[Config, int], str | None]
    set_pretrained: Callable[[Config, Path | None], None]
    check_weights: Callable[[Config, dict, str], None]  # the weights fill the model, or a UserError
    set_input_size: Callable[[Config, int], str]
    random_note: str  # said when the run has no --weights

    def apply(self, cfg: Config, run: Run) -> None:
        """Point the config at the run's data and weights, match the backbone depth, apply --input-size."""
        self.set_data_root(cfg, run.data_root)
        fit_backbone(cfg, run, set_depth=self.set_backbone_depth, set_pretrained=self.set_pretrained,
                     check_loads=self.check_weights, random_note=self.random_note)
        if run.args.input_size is not None:
            run.notes.append(self.set_input_size(cfg, run.args.input_size))


class MMEngineAdapter(Adapter):
    """mmengine's Runner as the skeleton's engine; `prepare(cfg, run)` and `summarize(test_metrics)` are the task's."""

    weights_format = "mmlab"

    def __init__(self, task: str, *, backend: str, backends: tuple[str, ...], data_format: str, config: Path,
                 prepare: Callable[[Config, Run], None], summarize: Callable[[dict[str, Any]], dict[str, float]],
                 min_input_size: int = 16):
        super().__init__(task)
        self.backend, self.backends, self.data_format = backend, backends, data_format
        self.config, self.prepare, self.summarize = config, prepare, summarize
        self.min_input_size = min_input_size

    def default_config(self) -> Path:
        """The task's protocol config."""
        return self.config

    def setup(self, run: Run) -> None:
        """Resuming reads back this run's own checkpoints: trust them (and only them) in full."""
        trust_checkpoints_in(run.work_dir)

    def check_overrides(self, config_path: Path, overrides: list[Override]) -> None:
        """The config file loads and takes the overrides."""
        load_mm_config(config_path, overrides)

    def build_config(self, config_path: Path, run: Run) -> Config:
        """The protocol config, the overrides, the task's edits, the overrides again, devices and schedule."""
        # Overrides go in before `prepare` (so it sees e.g. model.backbone.depth=18) and again after
        # it, so that what the user asked for wins over the task's own edits.
        cfg = load_mm_config(config_path, run.overrides)
        self.prepare(cfg, run)
        apply_overrides(cfg, run.overrides)
        run.notes += adapt_to_devices(cfg, run.gpus, processes=run.world_size)
        if run.args.max_iters is not None:
            run.notes += shorten_schedule(cfg, run.args.max_iters)
        run.notes += drop_final_only_validation(cfg)
        # an image that cannot be decoded mid-run stops it naming the file (last checkpoint kept)
        guard_pipelines(cfg, hint=check_command(self.data_format, run.data_root))
        cfg.load_from = None
        return cfg

    def iterations(self, cfg: Config) -> int:
        """train_cfg.max_iters."""
        return int(cfg.train_cfg.max_iters)

    def run_trial(self, cfg: Config, run: Run, trial_dir: Path, seed: int, resume: bool) -> dict[str, float]:
        """Train and test with mmengine's Runner in `trial_dir`."""
        cfg.work_dir = str(trial_dir)
        cfg.randomness = dict(seed=seed, deterministic=False)
        cfg.resume = resume
        return self.summarize(train_and_test(cfg))


def drop_final_only_validation(cfg: Config) -> list[str]:
    """Turn off a validation loop that would run only at the last iteration: the test right after repeats it."""
    interval = cfg.train_cfg.get("val_interval", 1)
    if cfg.get("val_dataloader") is None or interval < cfg.train_cfg.max_iters:
        return []
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    return ["validation during training off: it would only repeat the final test"]


def train_and_test(cfg: Config) -> dict[str, Any]:
    """Train with mmengine's Runner, resuming from the work dir's last checkpoint, then test; returns test metrics."""
    from mmengine.runner import Runner

    add_rng_state_hook(cfg)  # a resumed run continues with the generators' states of its checkpoint
    runner = Runner.from_cfg(cfg)
    try:
        runner.train()
        return runner.test()
    finally:
        stop_loader_workers(runner)


def stop_loader_workers(runner: Any) -> None:
    """Shut down the runner's persistent data-loader workers now, not whenever the garbage collector gets to them.

    Left to `__del__`, they are reaped in the middle of the next run in the same
    process (the demo, the tests) and each can hold it up for seconds.
    """
    for name in ("_train_loop", "_val_loop", "_test_loop"):
        loader = getattr(getattr(runner, name, None), "dataloader", None)
        if loader is not None:
            shutdown_loader_workers(loader)
