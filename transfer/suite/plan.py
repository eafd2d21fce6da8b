"""The suite's plan: checkpoints x protocols x trials, each a run of tools/run_transfer.sh in its own work dir."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from transfer.errors import UserError
from transfer.tasks import TASKS as ALL_TASKS

REPO = Path(__file__).resolve().parents[2]
TASKS = tuple(ALL_TASKS)
DEFAULT_TASKS = ("linear", "voc", "coco", "cityscapes")  # the paper's table


@dataclass(frozen=True)
class Protocol:
    """One column group of the table: a task and, for COCO, which of its configs."""

    task: str
    variant: str | None = None  # a named config of the task (`transfer.tasks`), e.g. COCO's fpn_1x

    @property
    def key(self) -> str:
        """Its name in work dirs and the status table: `voc`, `coco_fpn_1x`."""
        return self.task if self.variant is None else f"{self.task}_{self.variant}"

    @property
    def title(self) -> str:
        """How the status table names it."""
        task = ALL_TASKS[self.task]
        return task.variants[self.variant].title if self.variant else task.title

    def config(self, backend: str | None) -> Path | None:
        """Its config file, when not the task's default (a named variant)."""
        return ALL_TASKS[self.task].config(self.variant, backend)


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
    overrides: dict[str, list[str]] = field(default_factory=dict)  # task or protocol key -> key=value words

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
        argv += ["--backend", self.backend] if self.backend and len(ALL_TASKS[job.protocol.task].backends) > 1 else []
        argv += ["--gpus", str(self.gpus)] if self.gpus is not None else []
        if not full_size:
            argv += ["--max-iters", str(self.max_iters)] if self.max_iters else []
            argv += ["--input-size", str(self.input_size)] if self.input_size else []
        own = self.overrides.get(job.protocol.key, []) if job.protocol.key != job.protocol.task else []
        return argv + list(extra or []) + self.overrides.get(job.protocol.task, []) + own


def parse_protocols(text: str | None) -> list[Protocol]:
    """`linear,voc,coco:c4_2x+fpn_1x,cityscapes` -> protocols (a task alone: its first named config, if any);
    default the paper's table."""
    words = [w.strip() for w in (text or ",".join(DEFAULT_TASKS)).split(",") if w.strip()]
    out: list[Protocol] = []
    for word in words:
        name, _, variant = word.partition(":")
        if name not in TASKS:
            raise UserError(f"--tasks: unknown task {name!r}; the tasks are {', '.join(TASKS)}")
        named = ALL_TASKS[name].variants
        if variant and not named:
            raise UserError(f"--tasks {word}: {name} has no named configs; "
                            f"those that do: {', '.join(t for t in TASKS if ALL_TASKS[t].variants)}")
        for v in variant.split("+") if variant else [next(iter(named), None)]:
            if v is not None and v not in named:
                raise UserError(f"--tasks {word}: unknown {name} config {v!r}; the configs are {', '.join(named)}")
            protocol = Protocol(name, v)
            if protocol not in out:
                out.append(protocol)
    if not out:
        raise UserError("--tasks names no task")
    return out


def parse_trials(text: str | None, protocols: list[Protocol]) -> dict[str, int]:
    """`--trials 3` (every task) or `--trials voc=5,coco=2`; the rest keep the protocols' own."""
    trials = {name: task.trials for name, task in ALL_TASKS.items()}
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
    """`key=value` for every task, `TASK:key=value` for one task, `PROTOCOL:key=value` for one of its configs
    (`coco_retinanet_1x:model.test_cfg.nms_pre=100`): each engine, and each model, has its own keys."""
    scopes = [*TASKS, *(Protocol(t, v).key for t in TASKS for v in ALL_TASKS[t].variants)]
    out: dict[str, list[str]] = {t: [] for t in TASKS}
    for word in words:
        key, sep, _ = word.partition("=")
        if not sep:
            raise UserError(f"override {word!r} is not key=value, TASK:key=value or PROTOCOL:key=value")
        scope, colon, rest = key.partition(":")
        if colon and scope in scopes:
            out.setdefault(scope, []).append(word[len(scope) + 1:])
        else:
            for t in TASKS:
                out[t].append(word)
    return out
