"""Resume means the same result on detectron2: the train loader's position and the generators' states go into
every checkpoint.

detectron2's `DefaultTrainer.resume_or_load` restores the weights, optimizer,
scheduler and iteration, but its train loader starts the seeded sample stream from
the beginning again and the generators keep the states `default_setup` seeded. Here
the trainer's train loader is wrapped in `ResumableLoader`, registered with the
checkpointer (`Checkpointer.add_checkpointable`): the checkpoint holds how many
batches training has taken and the generators' states at that point. On resume the
loader re-reads those batches first (the sampler, the aspect-ratio grouping and the
workers' generators replay what they did), then the generators are put back to
their saved states, just before the first resumed batch is taken.

Written against detectron2's public trainer API (`DefaultTrainer.data_loader`,
`checkpointer.add_checkpointable`); detectron2 is not installed where this was
written, so tests/test_resume.py's detectron2 test is the first to run it.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from transfer.rng import rng_state, set_rng_state

CHECKPOINT_KEY = "resume_state"


class ResumableLoader:
    """An endless train loader that counts the batches taken and, after a resume, skips those already trained on."""

    def __init__(self, loader: Iterable, num_workers: int):
        self.loader, self.num_workers = loader, num_workers
        self.batches = 0  # batches training has taken (over the whole run, the resumed part included)
        self.pending: dict[str, Any] | None = None  # generators' states to restore after skipping

    def __iter__(self) -> Iterator[Any]:
        # The underlying iterator is made where SimpleTrainer would make it (its first step), so the workers'
        # base seed is drawn from the same torch state as in an uninterrupted run.
        iterator = iter(self.loader)
        for _ in range(self.batches):
            next(iterator)
        state, self.pending = self.pending, None
        if state is not None:
            # num_workers=0: the skipped batches were read in this process and already replayed numpy's and
            # Python's draws of the data pipeline; only torch's (the model's) are restored then
            set_rng_state(state, torch_only=self.num_workers == 0)
        for batch in iterator:
            self.batches += 1
            yield batch

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint keeps: the batches taken so far and the generators' states."""
        return {"batches": self.batches, "rng": rng_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from a checkpoint: skip its batches and restore its generators when training starts."""
        self.batches = int(state["batches"])
        self.pending = state["rng"]


def make_resumable(trainer: Any, num_workers: int) -> None:
    """Wrap a DefaultTrainer's train loader in a ResumableLoader saved with every checkpoint; call before
    `resume_or_load`."""
    loader = ResumableLoader(trainer.data_loader, num_workers)
    trainer.data_loader = loader  # DefaultTrainer's public property: the loader of its SimpleTrainer
    trainer.checkpointer.add_checkpointable(CHECKPOINT_KEY, loader)
