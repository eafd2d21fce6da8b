"""SSA pretraining (method.md) and its baselines (SEED, MoCo v2) in one trainer.

    from transfer.pretrain import load_config, train
    cfg = load_config(method="ssa", overrides=["data.root=data/imagefolder", "model.arch=resnet18"])
    final_checkpoint = train(cfg, "work_dirs/ssa")
"""
from transfer.pretrain.config import load_config
from transfer.pretrain.trainer import METHODS, TrainingDiverged, train

__all__ = ["METHODS", "TrainingDiverged", "load_config", "train"]
