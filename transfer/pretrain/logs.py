"""What a pretraining run records: a progress line, `train_log.jsonl`, TensorBoard events, `loss_curves.png`."""
from __future__ import annotations

import datetime
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

LOG_FILE = "train_log.jsonl"
CURVES_FILE = "loss_curves.png"
TB_DIR = "tb"


class TrainLog:
    """Per-step records (every term, lr, images/s) to JSONL and TensorBoard; a console line every `print_every`."""

    def __init__(self, work_dir: str | os.PathLike, total_steps: int, print_every: int, name: str,
                 start_step: int = 0, tensorboard: bool = True):
        self.work_dir = Path(work_dir)
        self.total_steps, self.print_every, self.name = total_steps, max(1, print_every), name
        self.path = self.work_dir / LOG_FILE
        self._drop_records_after(start_step)  # a killed run may have logged steps past its last checkpoint
        self.file = self.path.open("a")
        self.writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.work_dir / TB_DIR), purge_step=start_step + 1 if start_step else None)
        self.start_time, self.start_step = time.perf_counter(), start_step
        self.window: list[tuple[float, int]] = [(self.start_time, start_step)]

    def _drop_records_after(self, step: int) -> None:
        if not self.path.is_file():
            return
        kept = [line for line in self.path.read_text().splitlines()
                if line.strip() and json.loads(line).get("step", 0) <= step]
        self.path.write_text("".join(line + "\n" for line in kept))

    def step(self, step: int, epoch: int, values: dict[str, float], images: int) -> None:
        """Record step `step` (`values`: loss, each term, lr, momentum); print every `print_every` steps."""
        now = time.perf_counter()
        self.window.append((now, step))
        self.window = self.window[-50:]
        (t0, s0), (t1, s1) = self.window[0], self.window[-1]
        images_per_s = images * (s1 - s0) / (t1 - t0) if t1 > t0 else 0.0
        record = {"step": step, "epoch": epoch, **{k: round(v, 6) for k, v in values.items()},
                  "images_per_s": round(images_per_s, 2), "time": round(now - self.start_time, 3)}
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        if self.writer is not None:
            for key, value in values.items():
                group = "lr" if key in ("lr", "momentum") else "loss"
                self.writer.add_scalar(f"{group}/{key}", value, step)
            self.writer.add_scalar("speed/images_per_s", images_per_s, step)
        if step % self.print_every == 0 or step == self.total_steps or step == self.start_step + 1:
            seconds_per_step = (t1 - t0) / (s1 - s0) if s1 > s0 else 0.0
            eta = datetime.timedelta(seconds=int(seconds_per_step * (self.total_steps - step)))
            terms = " ".join(f"{k} {v:.4f}" for k, v in values.items() if k not in ("lr", "momentum"))
            print(f"[{self.name}] step {step}/{self.total_steps} ep {epoch} | {terms} | lr {values['lr']:.4g} | "
                  f"{images_per_s:.1f} img/s | eta {eta}", flush=True)

    def message(self, text: str) -> None:
        """A line on the console (and stderr-free): for notes such as a resume or a checkpoint."""
        print(f"[{self.name}] {text}", file=sys.stdout, flush=True)

    def close(self) -> None:
        """Flush and close the files."""
        self.file.close()
        if self.writer is not None:
            self.writer.close()


def read_log(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of a `train_log.jsonl`."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def plot_loss_curves(log_path: str | os.PathLike, out_path: str | os.PathLike, title: str = "") -> Path:
    """A PNG with one panel per loss term and one for the lr, against the step, from `train_log.jsonl`."""
    from matplotlib.figure import Figure  # the object API: no pyplot, no GUI backend, a faster import

    from transfer.fileio import atomic_path

    records = read_log(log_path)
    skip = {"step", "epoch", "time", "images_per_s", "momentum"}
    keys = [k for k in records[0] if k not in skip] if records else []
    fig = Figure(figsize=(3.2 * max(1, len(keys)), 2.8), layout="constrained")
    axes = fig.subplots(1, max(1, len(keys)), squeeze=False)
    steps = [r["step"] for r in records]
    for ax, key in zip(axes[0], keys):
        ax.plot(steps, [r.get(key, float("nan")) for r in records], lw=1)
        ax.set_title(key)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    out_path = Path(out_path)
    with atomic_path(out_path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return out_path
