"""The suite's plan: checkpoints x protocols x trials, each a run of tools/run_transfer.sh in its own work dir."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from transfer.errors import UserError

REPO = Path(__file__).resolve().parents[2]
TASKS = ("linear", "voc", "coco", "cityscapes")
MMDET = REPO / "configs" / "detection" / "mmdet"
DETECTRON2 = REPO / "configs" / "detection" / "detectron2"
# COCO's configs by name (`--tasks coco:fpn_1x`); `coco` alone is the first, the paper's main row.
COCO_CONFIGS = {
    "c4_1x": {"mmdet": MMDET / "mask-rcnn_r50-c4-syncbn_1x_coco.py",
              "detectron2": DETECTRON2 / "coco_mask_rcnn_R_50_C4_1x.yaml"},
    "c4_2x": {"mmdet": MMDET / "mask-rcnn_r50-c4-syncbn_2x_coco.py",
              "detectron2": DETECTRON2 / "coco_mask_rcnn_R_50_C4_2x.yaml"},
    "fpn_1x": {"mmdet": MMDET / "mask-rcnn_r50-fpn-syncbn_1x_coco.py",
               "detectron2": DETECTRON2 / "coco_mask_rcnn_R_50_FPN_1x.yaml"},
}
COCO_TITLES = {"c4_1x": "COCO C4 1x", "c4_2x": "COCO C4 2x", "fpn_1x": "COCO FPN 1x"}
# The protocols' own number of trials (the project's protocol notes): VOC is averaged over 5 seeds.
DEFAULT_TRIALS = {"linear": 1, "voc": 5, "coco": 1, "cityscapes": 1}
# The dataset format each task reads from --data-root.
FORMATS = {"linear": "imagefolder", "voc": "voc", "coco": "coco", "cityscapes": "cityscapes"}


@dataclass(frozen=True)
class Protocol:
    """One column group of the table: a task and, for COCO, which of its configs."""

    task: str
    variant: str | None = None  # COCO: c4_1x | c4_2x | fpn_1x

    @property
    def key(self) -> str:
        """Its name in work dirs and the status table: `voc`, `coco_fpn_1x`."""
        return self.task if self.variant is None else f"{self.task}_{self.variant}"

    @property
    def title(self) -> str:
        """How the status table names it."""
        return COCO_TITLES[self.variant] if self.variant else self.task

    def config(self, backend: str | None) -> Path | None:
        """Its config file, when not the task's default (COCO's variants)."""
        return COCO_CONFIGS[self.variant][backend or "mmdet"] if self.variant else None


@dataclass(frozen=True)
class Checkpoint:
    """A backbone to evaluate: its file and the name of its row."""

    name: str
    weights: Path


@dataclass(frozen=True)
class Job:
    """One run of tools/run_transfer.sh: a checkpoint on a protocol with one seed."""

    checkpoint: Checkpoint
    protocol: Protocol
    trial: int
    trials: int
    seed: int
    work_dir: Path

    @property
    def label(self) -> str:
        """`ssa/voc/trial2` -- how logs and the status name it."""
        trial = f"/trial{self.trial}" if self.trials > 1 else ""
        return f"{self.checkpoint.name}/{self.protocol.key}{trial}"


@dataclass
class SuitePlan:
    """Everything the suite runs, and how each run is sized."""

    work_dir: Path
    data_root: Path
    checkpoints: list[Checkpoint]
    protocols: list[Protocol]
    trials: dict[str, int]
    seed: int = 0
    gpus: int | None = None
    backend: str | None = None
    max_iters: int | None = None
    input_size: int | None = None
    overrides: dict[str, list[str]] = field(default_factory=dict)  # task -> key=value words

    def protocol_dir(self, checkpoint: Checkpoint, protocol: Protocol) -> Path:
        """Where a checkpoint's runs of a protocol go (its trials in trialK/ below)."""
        return self.work_dir / "runs" / checkpoint.name / protocol.key

    def jobs(self) -> list[Job]:
        """Every (checkpoint, protocol, trial), protocol by protocol so that a column fills in first."""
        out = []
        for protocol in self.protocols:
            n = self.trials[protocol.task]
            for checkpoint in self.checkpoints:
                base = self.protocol_dir(checkpoint, protocol)
                for trial in range(n):
                    out.append(Job(checkpoint, protocol, trial, n, self.seed + trial,
                                   base if n == 1 else base / f"trial{trial}"))
        return out

    def argv(self, job: Job, extra: list[str] | None = None, full_size: bool = False) -> list[str]:
        """The words of `tools/run_transfer.sh` for `job` (`extra`: more flags and overrides).

        `full_size` leaves out the suite's --max-iters and --input-size (the preflight).
        """
        argv = [job.protocol.task, "--weights", str(job.checkpoint.weights), "--data", str(self.data_root),
                "--work-dir", str(job.work_dir), "--seed", str(job.seed)]
        config = job.protocol.config(self.backend)
        argv += ["--config", str(config)] if config else []
        argv += ["--backend", self.backend] if self.backend and job.protocol.task in ("voc", "coco") else []
        argv += ["--gpus", str(self.gpus)] if self.gpus is not None else []
        if not full_size:
            argv += ["--max-iters", str(self.max_iters)] if self.max_iters else []
            argv += ["--input-size", str(self.input_size)] if self.input_size else []
        return argv + list(extra or []) + self.overrides.get(job.protocol.task, [])


def parse_protocols(text: str | None) -> list[Protocol]:
    """`linear,voc,coco:c4_2x,cityscapes` -> protocols; default all four (COCO: C4 1x)."""
    words = [w.strip() for w in (text or ",".join(TASKS)).split(",") if w.strip()]
    out: list[Protocol] = []
    for word in words:
        task, _, variant = word.partition(":")
        if task not in TASKS:
            raise UserError(f"--tasks: unknown task {task!r}; the tasks are {', '.join(TASKS)}")
        if variant and task != "coco":
            raise UserError(f"--tasks {word}: only coco has named configs ({', '.join(COCO_CONFIGS)})")
        variants = variant.split("+") if variant else (["c4_1x"] if task == "coco" else [None])
        for v in variants:
            if v is not None and v not in COCO_CONFIGS:
                raise UserError(f"--tasks {word}: unknown coco config {v!r}; the configs are {', '.join(COCO_CONFIGS)}")
            protocol = Protocol(task, v)
            if protocol not in out:
                out.append(protocol)
    if not out:
        raise UserError("--tasks names no task")
    return out


def parse_trials(text: str | None, protocols: list[Protocol]) -> dict[str, int]:
    """`--trials 3` (every task) or `--trials voc=5,coco=2`; the rest keep the protocols' own."""
    trials = dict(DEFAULT_TRIALS)
    if text:
        pairs = [p for p in text.split(",") if p]
        for pair in pairs:
            task, sep, value = pair.rpartition("=")
            tasks = [task] if sep else list(TASKS)
            if not value.isdigit() or int(value) < 1 or any(t not in TASKS for t in tasks):
                raise UserError(f"--trials {text}: expected N or TASK=N,... with N >= 1 and TASK one of "
                                f"{', '.join(TASKS)}")
            trials.update({t: int(value) for t in tasks})
    return {p.task: trials[p.task] for p in protocols}


def parse_checkpoints(weights: list[str], weights_list: str | None, names: list[str]) -> list[Checkpoint]:
    """The checkpoints of `--weights` (repeated) and `--weights-list FILE` (`PATH [NAME]` a line), named."""
    entries: list[tuple[str, str | None]] = [(w, None) for w in weights]
    if weights_list:
        path = Path(weights_list)
        if not path.is_file():
            raise UserError(f"--weights-list {weights_list} does not exist")
        for line in path.read_text().splitlines():
            words = line.split("#", 1)[0].split()
            if words:
                entries.append((words[0], words[1] if len(words) > 1 else None))
    if not entries:
        raise UserError("no checkpoint: pass --weights CKPT (repeated) or --weights-list FILE")
    if len(names) > len(entries):
        raise UserError(f"{len(names)} --name for {len(entries)} checkpoint(s): one --name per --weights, in order")
    out, seen = [], set()
    for i, (weights_path, listed) in enumerate(entries):
        path = Path(weights_path)
        if not path.is_file():
            raise UserError(f"checkpoint {weights_path} does not exist")
        name = names[i] if i < len(names) else listed or path.stem
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.+-]*", name):
            raise UserError(f"checkpoint name {name!r}: use letters, digits and _.+- (it names a folder)")
        if name in seen:
            raise UserError(f"two checkpoints are named {name!r}; give each its own --name")
        seen.add(name)
        out.append(Checkpoint(name, path.resolve()))
    return out


def parse_task_overrides(words: list[str]) -> dict[str, list[str]]:
    """`key=value` for every task, `TASK:key=value` for one (each engine has its own keys)."""
    out: dict[str, list[str]] = {t: [] for t in TASKS}
    for word in words:
        key, sep, _ = word.partition("=")
        if not sep:
            raise UserError(f"override {word!r} is not key=value or TASK:key=value")
        task, colon, rest = key.partition(":")
        if colon and task in TASKS:
            out[task].append(word[len(task) + 1:])
        else:
            for t in TASKS:
                out[t].append(word)
    return out
