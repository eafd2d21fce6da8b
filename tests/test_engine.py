"""The shared mmengine plumbing: overrides, devices, schedules, and deliberate checkpoint loading."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision
from mmengine.config import Config

from transfer.engine.backbone import backbone_depth
from transfer.engine.config import load_mm_config
from transfer.engine.devices import adapt_to_devices, replace_syncbn
from transfer.engine.schedule import shorten_schedule
from transfer.errors import UserError


def _protocol_cfg() -> Config:
    return Config(dict(
        protocol_gpus=8,
        model=dict(backbone=dict(norm_cfg=dict(type="SyncBN", requires_grad=True)),
                   roi_head=dict(shared_head=dict(norm_cfg=dict(type="SyncBN")),
                                 heads=[dict(norm_cfg=dict(type="SyncBN")), dict(norm_cfg=dict(type="GN"))])),
        train_dataloader=dict(batch_size=2),
        optim_wrapper=dict(optimizer=dict(type="SGD", lr=0.02)),
        train_cfg=dict(type="IterBasedTrainLoop", max_iters=24000, val_interval=24000),
        param_scheduler=[dict(type="LinearLR", by_epoch=False, begin=0, end=100),
                         dict(type="MultiStepLR", by_epoch=False, begin=0, end=24000, milestones=[18000, 22000])],
        default_hooks=dict(checkpoint=dict(type="CheckpointHook", interval=2000), logger=dict(interval=50)),
    ))


def test_load_mm_config_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_mm_config(tmp_path / "none.py")
    bad = tmp_path / "bad.py"
    bad.write_text("x = (\n")
    with pytest.raises(UserError, match="could not be loaded"):
        load_mm_config(bad)
    good = tmp_path / "good.py"
    good.write_text("a = dict(b=1, c=2, lr=0.1)\n")
    assert load_mm_config(good, ["a.b=5", "a.lr=1e-4"]).a == {"b": 5, "c": 2, "lr": 1e-4}
    with pytest.raises(UserError, match="unknown key 'a.d'"):
        load_mm_config(good, ["a.d=1"])
    with pytest.raises(UserError, match="a.b=x: expected an integer"):
        load_mm_config(good, ["a.b=x"])


def test_syncbn_becomes_bn_everywhere():
    cfg = _protocol_cfg()
    assert replace_syncbn(cfg) == 3
    assert cfg.model.roi_head.heads[0].norm_cfg.type == "BN" and cfg.model.roi_head.heads[1].norm_cfg.type == "GN"


def test_one_process_keeps_the_total_batch():
    cfg = _protocol_cfg()
    notes = adapt_to_devices(cfg, gpus=0)
    assert cfg.train_dataloader.batch_size == 16 and cfg.launcher == "none"
    assert cfg.model.backbone.norm_cfg.type == "BN"
    assert any("total batch of 16" in n for n in notes) and any("SyncBN" in n for n in notes)


def test_fewer_gpus_can_scale_lr_and_schedule_instead():
    cfg = _protocol_cfg()
    notes = adapt_to_devices(cfg, gpus=4, keep_total_batch=False)
    assert cfg.train_dataloader.batch_size == 2 and cfg.launcher == "pytorch"
    assert cfg.optim_wrapper.optimizer.lr == pytest.approx(0.01)
    assert cfg.train_cfg.max_iters == 48000 and cfg.param_scheduler[1].milestones == [36000, 44000]
    assert cfg.model.backbone.norm_cfg.type == "SyncBN"  # several processes do sync
    assert "linear scaling" in notes[0]


def test_total_batch_that_does_not_split():
    cfg = _protocol_cfg()
    cfg.protocol_gpus = 1
    cfg.train_dataloader.batch_size = 5
    with pytest.raises(UserError, match="does not split"):
        adapt_to_devices(cfg, gpus=2)


def test_shorten_schedule_scales_milestones_and_intervals():
    cfg = _protocol_cfg()
    notes = shorten_schedule(cfg, 240)
    assert cfg.train_cfg.max_iters == 240 and cfg.train_cfg.val_interval == 240
    assert cfg.param_scheduler[1].milestones == [180, 220] and cfg.param_scheduler[1].end == 240
    assert cfg.param_scheduler[0].end == 2  # warmup 100/24000 of the run, but LinearLR needs two steps
    assert cfg.default_hooks.checkpoint.interval == 120 and cfg.default_hooks.logger.interval == 24
    assert "24000 to 240" in notes[0]
    assert shorten_schedule(cfg, 10**6) == []
    with pytest.raises(UserError):
        shorten_schedule(cfg, 0)


def test_devices_all_visible_by_default_and_never_more(monkeypatch):
    from transfer.engine.runner import Adapter, resolve_devices

    for var in ("LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    assert resolve_devices(None, Adapter("voc")) == (visible, max(visible, 1))
    assert resolve_devices(0, Adapter("voc")) == (0, 1)
    with pytest.raises(UserError, match="GPU"):
        resolve_devices(visible + 1, Adapter("voc"))


def test_torchrun_on_the_cpu_is_one_gloo_job_or_refused(monkeypatch):
    from transfer.engine.runner import Adapter, resolve_devices

    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    mm, gloo, own = Adapter("voc"), Adapter("linear"), Adapter("voc")
    mm.backend, gloo.cpu_distributed, own.own_launcher, own.backend = "mmdet", True, True, "detectron2"
    assert resolve_devices(0, gloo) == (0, 2)  # one job of two processes
    with pytest.raises(UserError, match="mmdet cannot train one job over several CPU processes"):
        resolve_devices(0, mm)
    with pytest.raises(UserError, match="detectron2 starts its own processes"):
        resolve_devices(0, own)


def test_final_only_validation_is_dropped_but_periodic_validation_kept():
    from transfer.engine.task import drop_final_only_validation

    cfg = _protocol_cfg()
    cfg.val_dataloader, cfg.val_cfg, cfg.val_evaluator = dict(batch_size=1), dict(type="ValLoop"), dict(type="M")
    cfg.train_cfg.val_interval = 4000
    assert drop_final_only_validation(cfg) == [] and cfg.val_dataloader is not None
    shorten_schedule(cfg, 100)  # a short run validates only at its end
    assert drop_final_only_validation(cfg) and cfg.val_dataloader is None and cfg.val_evaluator is None


def test_backbone_depth_comes_from_the_weights_and_an_override_must_match(tmp_path: Path) -> None:
    weights = tmp_path / "r18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), weights)
    depth, state_dict = backbone_depth([], weights, "r18.pth")
    assert depth == 18 and "layer4.1.conv2.weight" in state_dict
    assert backbone_depth(["model.backbone.depth=18"], weights, "r18.pth")[0] == 18
    with pytest.raises(UserError, match=r"model.backbone.depth=50 was asked for, but r18.pth holds a resnet18"):
        backbone_depth(["model.backbone.depth=50"], weights, "r18.pth")
    assert backbone_depth(["model.backbone.depth=34"], None, None) == (34, None)
    assert backbone_depth([], None, None) == (None, None)
