"""The training loop every method shares: DDP, bf16 autocast, checkpoints, bit-exact resume, logs."""
from __future__ import annotations

import copy
import math
import os
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel

from transfer.engine.internals import ddp_ignore
from transfer.errors import UserError
from transfer.pretrain import checkpoint as ckpt
from transfer.backbone import resnet_trunk
from transfer.pretrain.data import ResumableSampler, TwoViewImages, build_loader, find_train_images
from transfer.distributed import Processes, close_processes, init_processes
from transfer.pretrain.encoder import Encoder
from transfer.pretrain.logs import CURVES_FILE, LOG_FILE, TrainLog, plot_loss_curves
from transfer.pretrain.model import LossSettings, PretrainModel
from transfer.pretrain.teacher import ema_momentum, ema_teacher, load_frozen_teacher
from transfer.pretrain.views import MoCoV2Views
from transfer.rng import set_rng_state

METHODS = ("ssa", "seed", "moco_v2")
# Keys a resumed run may change (they do not change what is computed).
RUN_CONTROL = {("data", "workers"), ("train", "save_every"), ("train", "log_every"), ("train", "threads")}


class TrainingDiverged(UserError):
    """A loss term became NaN or infinite: the run stops before the weights are touched."""


def validate_config(cfg: dict[str, Any]) -> None:
    """Raise UserError for settings that cannot run (each message says which key and what to do)."""
    if cfg["method"] not in METHODS:
        raise UserError(f"method {cfg['method']!r} is unknown; choose one of {', '.join(METHODS)}")
    loss = cfg["loss"]
    if cfg["method"] == "moco_v2" and cfg["teacher"]["checkpoint"]:
        raise UserError("moco_v2 has no pretrained teacher (its key encoder is an EMA of the student): drop --teacher")
    agg = cfg["aggregation"]
    if not any(loss[k] > 0 for k in ("cd_soft_weight", "cd_nce_weight", "align_weight", "aggregation_weight")):
        raise UserError("every loss weight is 0: nothing to train (loss.cd_soft_weight, cd_nce_weight, "
                        "align_weight, aggregation_weight)")
    if not 0 < agg["rho"] <= 1:
        raise UserError(f"aggregation.rho must be in (0, 1], not {agg['rho']}")
    if agg["weighting"] not in ("uniform", "softmax"):
        raise UserError(f"aggregation.weighting must be uniform or softmax, not {agg['weighting']!r}")
    if head_norm(cfg) not in ("bn", "none"):
        raise UserError(f"model.head_norm must be bn or none, not {head_norm(cfg)!r}")
    if cfg["teacher"]["heads"] not in ("random", "align"):
        raise UserError(f"teacher.heads must be random or align, not {cfg['teacher']['heads']!r}")
    if not loss["symmetric"] and (loss["align_weight"] > 0 or loss["aggregation_weight"] > 0):
        raise UserError("loss.symmetric=false works only without the dense terms "
                        "(align_weight = aggregation_weight = 0)")
    for key in ("tau_s", "tau_t"):
        if not loss[key] > 0:
            raise UserError(f"loss.{key} must be > 0, not {loss[key]}")
    if cfg["train"]["batch_size"] < 1 or cfg["data"]["image_size"] < 32:
        raise UserError("train.batch_size must be >= 1 and data.image_size >= 32 (one stride-32 location)")


def head_norm(cfg: dict[str, Any]) -> str:
    """`model.head_norm`; checkpoints written before the key existed had no norm ("none")."""
    return cfg["model"].get("head_norm", "none")


def loss_settings(cfg: dict[str, Any]) -> LossSettings:
    """The model's LossSettings from the config's `loss` and `aggregation` sections."""
    loss, agg = cfg["loss"], cfg["aggregation"]
    return LossSettings(cd_soft_weight=float(loss["cd_soft_weight"]), cd_nce_weight=float(loss["cd_nce_weight"]),
                        align_weight=float(loss["align_weight"]), aggregation_weight=float(loss["aggregation_weight"]),
                        tau_s=float(loss["tau_s"]), tau_t=float(loss["tau_t"]), symmetric=bool(loss["symmetric"]),
                        rho=float(agg["rho"]), tau_a=float(agg["tau_a"]), weighting=agg["weighting"],
                        aggregation_tau=float(agg["tau"]))


def build_model(cfg: dict[str, Any]) -> tuple[PretrainModel, dict[str, Any]]:
    """Student, teacher (loaded or EMA) and queues, initialised from `cfg['seed']` (identically on every process)."""
    settings = loss_settings(cfg)
    m = cfg["model"]
    torch.manual_seed(cfg["seed"])
    norm = head_norm(cfg) == "bn"
    student = Encoder(resnet_trunk(m["arch"]), m["head_hidden"], m["head_dim"], dense=settings.dense,
                      shared=m["share_heads"], norm=norm)
    path = cfg["teacher"]["checkpoint"]
    if path:
        teacher, info = load_frozen_teacher(path, m["head_hidden"], m["head_dim"], settings.dense, m["share_heads"],
                                            cfg["teacher"]["heads"], seed=cfg["seed"] + 1, norm=norm)
        teacher_info = {"kind": "frozen", "path": str(path), "arch": info["arch"], "source": info.get("source")}
    else:
        teacher = ema_teacher(student)
        teacher_info = {"kind": "ema", "path": None, "arch": m["arch"], "source": None}
    model = PretrainModel(student, teacher, settings, m["queue_size"], cfg["aggregation"]["queue_size"], ema=not path,
                          seed=cfg["seed"])
    return model, teacher_info


def warmup_cosine_lr(step: int, total_steps: int, base_lr: float, warmup_steps: int, schedule: str) -> float:
    """Linear warm-up over `warmup_steps`, then cosine to 0 at `total_steps` (or constant)."""
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    if schedule == "constant":
        return base_lr
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return base_lr * 0.5 * (1 + math.cos(math.pi * progress))


def _auto(value: Any, default: bool) -> bool:
    return default if value in ("auto", None) else bool(value)


def _merge_resumed_config(saved: dict[str, Any], current: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The checkpoint's config with the current run-control keys; and the current keys that were ignored."""
    merged, ignored = copy.deepcopy(saved), []
    for section, value in current.items():
        if isinstance(value, dict):
            for key, v in value.items():
                if (section, key) in RUN_CONTROL:
                    merged[section][key] = v
                elif saved.get(section, {}).get(key) != v:
                    ignored.append(f"{section}.{key}={v!r} (checkpoint: {saved.get(section, {}).get(key)!r})")
        elif section != "name" and saved.get(section) != value:
            ignored.append(f"{section}={value!r} (checkpoint: {saved.get(section)!r})")
    return merged, ignored


def train(config: dict[str, Any], work_dir: str | os.PathLike, resume: bool | str | os.PathLike = False) -> Path:
    """Pretrain with `config` (see `load_config`); returns WORK_DIR/checkpoint_final.pth.

    `resume=True` continues from WORK_DIR/checkpoint_last.pth if there is one (a
    path resumes from that file); a finished run returns its final checkpoint at once.
    Under torchrun every process calls this; only rank 0 writes files.
    """
    work_dir = Path(work_dir)
    final_path, last_path = work_dir / ckpt.FINAL, work_dir / ckpt.LAST
    resume_from = None
    if resume:
        resume_from = Path(resume) if not isinstance(resume, bool) else (last_path if last_path.is_file() else None)
        if resume_from is None:
            print(f"no {last_path} to resume from: starting a new run", flush=True)
    elif last_path.is_file() or final_path.is_file():
        raise UserError(f"{work_dir} already holds a run ({last_path.name}); pass --resume to continue it, "
                        "or choose another --work-dir")
    record = ckpt.load_checkpoint(resume_from) if resume_from else None
    ignored: list[str] = []
    if record is not None:
        config, ignored = _merge_resumed_config(record["pretrain"]["config"], config)
    validate_config(config)

    on_gpu = torch.cuda.is_available()
    procs = init_processes(on_gpu)
    try:
        return _train(config, work_dir, procs, record, resume_from, ignored)
    finally:
        close_processes()


def _train(cfg: dict[str, Any], work_dir: Path, procs: Processes, record: dict[str, Any] | None,
           resume_from: Path | None, ignored: list[str]) -> Path:
    """The body of `train`, once the processes and the config are settled."""
    t, device = cfg["train"], procs.device
    on_gpu = device.type == "cuda"
    amp = _auto(t["amp"], on_gpu)
    channels_last = _auto(t["channels_last"], on_gpu)
    if t["threads"] and not on_gpu:
        torch.set_num_threads(int(t["threads"]))
    if _auto(t["deterministic"], not on_gpu):
        torch.use_deterministic_algorithms(True, warn_only=True)
    elif on_gpu:
        torch.backends.cudnn.benchmark = True
    if procs.is_main:
        work_dir.mkdir(parents=True, exist_ok=True)

    # data: two views of each image of the train split, in a resumable order
    if t["batch_size"] % procs.world_size:
        raise UserError(f"train.batch_size {t['batch_size']} (total) does not split over {procs.world_size} "
                        "processes; pass a multiple of the process count")
    batch = t["batch_size"] // procs.world_size
    if head_norm(cfg) == "bn" and batch == 1 and not cfg["loss"]["symmetric"]:
        raise UserError("model.head_norm=bn normalises over the batch, and one image per process is a batch of one "
                        "embedding; raise train.batch_size or set model.head_norm=none")
    images_root = find_train_images(cfg["data"]["root"], decode_images=cfg["data"]["check_images"])
    views = MoCoV2Views(cfg["data"]["image_size"], tuple(cfg["data"]["crop_scale"]),
                        blur_sigma=tuple(cfg["data"]["blur_sigma"]))
    dataset = TwoViewImages(images_root, views, cfg["seed"])
    sampler = ResumableSampler(len(dataset), batch, procs.world_size, procs.rank, cfg["seed"])
    loader = build_loader(dataset, sampler, int(cfg["data"]["workers"]), pin_memory=on_gpu)
    steps_per_epoch = sampler.steps_per_epoch
    total_steps = int(t["max_steps"]) if t["max_steps"] else int(t["epochs"]) * steps_per_epoch

    # model: student, teacher, queues
    model, teacher_info = build_model(cfg)
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    trainable = [p for p in model.parameters() if p.requires_grad]
    lr = cfg["optim"]["lr"] * t["batch_size"] / 256
    optimizer = torch.optim.SGD(trainable, lr=lr, momentum=cfg["optim"]["momentum"],
                                weight_decay=cfg["optim"]["weight_decay"])
    start_step = 0
    if record is not None:
        model.load_state_dict(record["state_dict"])
        optimizer.load_state_dict(record["optimizer"])
        start_step = int(record["pretrain"]["step"])
        set_rng_state(record["rng"])
    net: torch.nn.Module = model
    if procs.world_size > 1:
        # the teacher and the queues are the same on every process by construction: DDP leaves them alone
        frozen = [f"teacher.{n}" for n, p in model.teacher.named_parameters() if not p.requires_grad]
        frozen += [f"teacher.{n}" for n, _ in model.teacher.named_buffers()]
        frozen += [n for n, _ in model.named_buffers() if n.startswith(("queue.", "aggregate_queue."))]
        ddp_ignore(model, frozen)
        net = DistributedDataParallel(model, device_ids=[device.index] if on_gpu else None, broadcast_buffers=True)

    meta_base = {"method": cfg["method"], "variant": cfg.get("name", cfg["method"]), "arch": cfg["model"]["arch"],
                 "teacher": teacher_info["path"], "teacher_arch": teacher_info["arch"],
                 "teacher_kind": teacher_info["kind"], "total_steps": total_steps,
                 "steps_per_epoch": steps_per_epoch, "config": cfg}

    def save(path: Path, step: int) -> None:
        if procs.is_main:
            meta = {**meta_base, "step": step, "epoch": step // steps_per_epoch}
            ckpt.save_checkpoint(path, meta, model.state_dict(), optimizer.state_dict())

    name = cfg.get("name", cfg["method"])
    log = TrainLog(work_dir, total_steps, t["log_every"], name, start_step) if procs.is_main else None
    say = log.message if log else (lambda text: None)
    if record is not None:
        say(f"resumed from {resume_from} at step {start_step}/{total_steps}")
        for item in ignored:
            say(f"note: resuming keeps the checkpoint's setting; ignored {item}")
    if start_step >= total_steps:
        say(f"the run is complete (step {start_step}/{total_steps})")
        if procs.is_main and not (work_dir / ckpt.FINAL).is_file():
            save(work_dir / ckpt.FINAL, start_step)
        if log:
            log.close()
        return work_dir / ckpt.FINAL
    say(f"{cfg['method']} ({name}): student {cfg['model']['arch']}, teacher {teacher_info['kind']} "
        f"{teacher_info['arch']}{' from ' + teacher_info['path'] if teacher_info['path'] else ''}; "
        f"{len(dataset)} images in {images_root}, {procs.world_size} process(es) x {batch} = batch {t['batch_size']}, "
        f"{steps_per_epoch} steps/epoch, {total_steps} steps; lr {lr:.4g}; {device.type}"
        f"{', bf16' if amp else ''}{', channels_last' if channels_last else ''}")
    if cfg["model"]["queue_size"] > len(dataset):
        say(f"warning: the queue holds {cfg['model']['queue_size']} keys but the dataset has {len(dataset)} images: "
            "older views of the same images become negatives; consider model.queue_size and aggregation.queue_size "
            "below the number of images")

    warmup_steps = int(cfg["optim"]["warmup_epochs"] * steps_per_epoch)
    tc = cfg["teacher"]
    model.train()
    step, saved_step = start_step, start_step
    try:
        while step < total_steps:
            epoch, first_batch = divmod(step, steps_per_epoch)
            sampler.set_epoch(epoch, first_batch)
            for view1, view2, _, _ in loader:
                view1 = view1.to(device, non_blocking=True)
                view2 = view2.to(device, non_blocking=True)
                if channels_last:
                    view1 = view1.contiguous(memory_format=torch.channels_last)
                    view2 = view2.contiguous(memory_format=torch.channels_last)
                step_lr = warmup_cosine_lr(step, total_steps, lr, warmup_steps, cfg["optim"]["schedule"])
                for group in optimizer.param_groups:
                    group["lr"] = step_lr
                if step == 0:
                    model.start_teacher(view1, view2)  # BN statistics of the initial networks
                momentum = ema_momentum(step, total_steps, tc["momentum"], tc["momentum_end"], tc["momentum_schedule"])
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                    loss, terms = net(view1, view2, momentum)

                # one synchronisation per step: the terms averaged over processes, for the log and the NaN check
                values = torch.stack([loss.detach().float(), *(v.detach().float() for v in terms.values())])
                if procs.world_size > 1:
                    torch.distributed.all_reduce(values)
                    values /= procs.world_size
                numbers = dict(zip(["loss", *terms], values.tolist()))
                bad = [k for k, v in numbers.items() if not math.isfinite(v)]
                if bad:
                    term = next((k for k in bad if k != "loss"), "loss")
                    raise TrainingDiverged(
                        f"step {step + 1}: loss term {term!r} is {numbers[term]} "
                        f"({', '.join(f'{k}={v:.4g}' for k, v in numbers.items())}); stopped before updating the "
                        f"weights. The last good checkpoint is {work_dir / ckpt.LAST} (step {saved_step})"
                        f"{'' if saved_step else ' (none written yet)'}; lower optim.lr or check the temperatures")

                # compute gradient and do SGD step
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                step += 1
                if log:
                    log.step(step, epoch, {**numbers, "lr": step_lr, "momentum": momentum}, t["batch_size"])
                if step % t["save_every"] == 0 and step < total_steps:
                    save(work_dir / ckpt.LAST, step)
                    saved_step = step
                if step >= total_steps:
                    break
        save(work_dir / ckpt.LAST, step)
        if procs.is_main:
            ckpt.link_checkpoint(work_dir / ckpt.LAST, work_dir / ckpt.FINAL)  # the same file, not written twice
            plot_loss_curves(work_dir / LOG_FILE, work_dir / CURVES_FILE, title=name)
            say(f"done: {work_dir / ckpt.FINAL} (step {step}); curves in {work_dir / CURVES_FILE}")
    finally:
        if log:
            log.close()
    return work_dir / ckpt.FINAL
