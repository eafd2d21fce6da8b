"""Resume means the same result: an mmengine hook that saves the RNG states with each checkpoint and restores them.

What mmengine restores on resume by itself: the weights, optimizer, parameter
schedulers, message hub and iteration count; the data order too, because its
train loop re-reads the batches already trained on (`Advance dataloader N steps`)
from a sampler (`InfiniteSampler`, `DefaultSampler`) seeded from the run's seed,
and the loader's workers are seeded by mmengine's `worker_init_fn` from the same
seed, so they replay their augmentations. What it does not restore is the state of
the main process's generators: it seeds them afresh, and the first resumed
iteration draws other RPN / RoI samples (torch) than the uninterrupted run did.

This hook stores torch (CPU, CUDA), numpy and Python states in the checkpoint
(`before_save_checkpoint`, called at the end of the iteration being saved) and
puts them back in `before_train`, after `Runner.resume` and before the loop
re-reads the skipped batches. With `num_workers=0` the data pipeline draws from
the main process's numpy and Python generators while those batches are re-read,
in the very order of the first run: there only torch's generators are restored
(the model's draws) and the re-reading replays numpy's and Python's.
"""
from __future__ import annotations

from typing import Any

from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from transfer.rng import rng_state, set_rng_state

HOOK_TYPE = "RngStateHook"
CHECKPOINT_KEY = "rng_state"


@HOOKS.register_module(name=HOOK_TYPE, force=True)
class RngStateHook(Hook):
    """Save the generators' states with every checkpoint; restore them when the run resumes from one."""

    priority = "LOWEST"  # restore after every other hook's before_train

    def __init__(self) -> None:
        self.pending: dict[str, Any] | None = None

    def before_save_checkpoint(self, runner: Any, checkpoint: dict) -> None:
        """Add the generators' states to the checkpoint being written."""
        checkpoint[CHECKPOINT_KEY] = rng_state()

    def after_load_checkpoint(self, runner: Any, checkpoint: dict) -> None:
        """Keep the states of a loaded checkpoint until training starts (a `load_from` of weights never gets there)."""
        self.pending = checkpoint.get(CHECKPOINT_KEY)

    def before_train(self, runner: Any) -> None:
        """Restore the saved states when this run resumed from a checkpoint that has them."""
        state, self.pending = self.pending, None
        if state is None or runner.iter == 0:  # a fresh run (or weights loaded with load_from)
            return
        set_rng_state(state, torch_only=runner.train_dataloader.num_workers == 0)


def add_rng_state_hook(cfg: Config) -> None:
    """Make a resumed run of `cfg` continue bit-identically: add `RngStateHook` to its custom hooks (once)."""
    hooks = list(cfg.get("custom_hooks") or [])
    if not any(h.get("type") == HOOK_TYPE for h in hooks):
        hooks.append(dict(type=HOOK_TYPE))
    cfg.custom_hooks = hooks
