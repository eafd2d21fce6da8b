"""The engines' private APIs we still use (transfer/engine/internals.py) still do what we rely on; the public APIs
that replaced the others do the same job; one trust policy loads checkpoints for every reader."""
from __future__ import annotations

import copy
import datetime
import inspect
import multiprocessing
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from transfer.checkpoint.reading import read_checkpoint
from transfer.engine.internals import ddp_ignore, shutdown_loader_workers
from transfer.errors import UserError

REPO = Path(__file__).resolve().parent.parent


# ---- torch: the two private calls left ------------------------------------------------------------------------

def test_ddp_ignore_keeps_the_named_tensors_out_of_ddp(tmp_path: Path) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    if dist.is_initialized():
        pytest.skip("a process group is already up in this process")
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    ddp_ignore(model, ["1.weight", "1.bias"])
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        ddp = DistributedDataParallel(model)
        assert set(ddp.parameters_to_ignore) == {"1.weight", "1.bias"}
        synced = {id(p) for p in ddp.parameters()} - {id(model[1].weight), id(model[1].bias)}
        assert len(synced) == 2  # the first layer's weight and bias are still synchronised
    finally:
        dist.destroy_process_group()


def test_shutdown_loader_workers_stops_persistent_workers_now() -> None:
    before = set(multiprocessing.active_children())
    loader = DataLoader(list(range(4)), batch_size=2, num_workers=1, persistent_workers=True)
    assert [b.tolist() for b in loader] == [[0, 1], [2, 3]]
    workers = set(multiprocessing.active_children()) - before
    assert workers, "the persistent worker should still be running after the epoch"
    shutdown_loader_workers(loader)
    # torch renaming DataLoader._iterator or _shutdown_workers leaves the worker running: this fails
    assert not (workers & set(multiprocessing.active_children()))
    assert [b.tolist() for b in loader] == [[0, 1], [2, 3]]  # and the loader still works afterwards
    shutdown_loader_workers(loader)


# ---- mmengine: public APIs instead of private ones ------------------------------------------------------------

def test_replace_syncbn_edits_a_config_in_place_without_its_private_dict() -> None:
    from mmengine.config import Config

    from transfer.engine.devices import replace_syncbn

    cfg = Config(dict(model=dict(backbone=dict(norm_cfg=dict(type="SyncBN")),
                                 heads=[dict(norm_cfg=dict(type="SyncBN")), dict(norm_cfg=dict(type="GN"))])))
    assert replace_syncbn(cfg) == 2
    assert cfg.model.backbone.norm_cfg.type == "BN" and cfg.model.heads[0].norm_cfg.type == "BN"
    assert cfg.model.heads[1].norm_cfg.type == "GN"


def test_mmdet_data_root_reaches_nested_datasets_of_a_config() -> None:
    pytest.importorskip("mmdet")
    from transfer.detection.mmdet_config import set_data_root
    from transfer.engine.config import load_mm_config

    cfg = load_mm_config(REPO / "configs" / "detection" / "mmdet" / "faster-rcnn_r50-c4-syncbn_24k_voc0712.py")
    set_data_root(cfg, Path("/data/voc"))
    assert all(d.data_root == "/data/voc/" for d in cfg.train_dataloader.dataset.datasets)


def test_loaded_configs_are_never_formatted_with_yapf(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Config's public constructor with `format_python_code=False` replaces setting `Config._format_python_code`."""
    import mmengine.config.config as mmengine_config

    from transfer.engine.config import load_mm_config

    def no_yapf(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("the config text was formatted with yapf")

    monkeypatch.setattr(mmengine_config, "FormatCode", no_yapf)  # fails loudly if mmengine renames it
    path = tmp_path / "protocol.py"
    path.write_text("model = dict(type='Net', norm_cfg=dict(type='SyncBN'))\n"
                    "train_dataloader = dict(batch_size=2, dataset=dict(type='Set', pipeline=[dict(type='Load')]))\n")
    cfg = load_mm_config(path, ["train_dataloader.batch_size=1"])
    assert "batch_size=1" in cfg.pretty_text.replace(" ", "")
    assert copy.deepcopy(cfg).pretty_text == cfg.pretty_text  # mmengine's Runner works on a deep copy


# ---- detectron2: the public hooks we rebuild, the protected method we extend ----------------------------------

def test_detectron2_hooks_and_res5_block_are_as_used() -> None:
    pytest.importorskip("detectron2")
    from detectron2.engine import DefaultTrainer, hooks
    from detectron2.modeling.roi_heads import Res5ROIHeads

    assert list(inspect.signature(hooks.PeriodicWriter).parameters)[:2] == ["writers", "period"]
    assert list(inspect.signature(hooks.EvalHook).parameters)[:2] == ["eval_period", "eval_function"]
    assert callable(getattr(Res5ROIHeads, "_build_res5_block", None))  # transfer/detection/detectron2_roi_heads.py
    assert isinstance(inspect.getattr_static(DefaultTrainer, "data_loader"), property)  # make_resumable sets it


# ---- one trust policy for checkpoints -------------------------------------------------------------------------

def test_mmengine_loads_checkpoints_by_the_same_policy_as_every_other_reader(tmp_path: Path) -> None:
    from mmengine.logging import HistoryBuffer

    from transfer.engine.compat import load_local_checkpoint, trust_checkpoints_in

    zoo = tmp_path / "zoo.pth"  # a file we did not write, with numpy data and mmengine's message hub
    buf = HistoryBuffer()
    buf.update(1.0)
    torch.save({"state_dict": {"w": torch.ones(2)}, "meta": {"seed": np.int64(1), "a": np.zeros(2)},
                "message_hub": {"log": buf}}, zoo)
    for read in (load_local_checkpoint, read_checkpoint):  # loads weights-only, allow-listed
        loaded = read(str(zoo))
        assert loaded["meta"]["seed"] == 1 and loaded["message_hub"]["log"].current() == 1.0

    risky = tmp_path / "run" / "iter_2.pth"  # any other pickled object is refused...
    risky.parent.mkdir()
    torch.save({"state_dict": {}, "meta": {"when": datetime.date(2020, 1, 1)}}, risky)
    for read in (load_local_checkpoint, read_checkpoint):
        with pytest.raises(UserError, match=r"datetime\.date.*--trust-pickle"):
            read(str(risky))
    # ... unless the user vouches for it, or it is in this run's own work dir
    assert read_checkpoint(risky, trust_pickle=True)["meta"]["when"].year == 2020
    trust_checkpoints_in(risky.parent)
    assert load_local_checkpoint(str(risky))["meta"]["when"].year == 2020
    with pytest.raises(UserError, match=r"datetime\.date"):  # the same file outside the work dir is not trusted
        load_local_checkpoint(str(_copy(risky, tmp_path)))
    with pytest.raises(UserError, match="no such file"):
        load_local_checkpoint(str(tmp_path / "missing.pth"))


def _copy(path: Path, folder: Path) -> Path:
    """`path` copied into `folder` (outside any trusted work dir)."""
    out = folder / f"copy-of-{path.name}"
    out.write_bytes(path.read_bytes())
    return out
