"""Two processes (gloo, CPU) under torchrun: the replicas stay identical and the queue holds both processes' keys."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent


def test_two_processes_stay_identical(demo_data: Path, tmp_path: Path):
    work = tmp_path / "ddp"
    # Each process trains, then saves its own model state (the trainer itself writes only on rank 0).
    script = tmp_path / "worker.py"
    script.write_text(textwrap.dedent(f"""
        import os, torch
        from transfer.pretrain import load_config, train, trainer
        built = []
        build = trainer.build_model
        def keep(cfg):
            model, info = build(cfg)
            built.append(model)
            return model, info
        trainer.build_model = keep
        cfg = load_config(method="ssa", overrides=[
            "data.root={demo_data / 'imagefolder'}", "data.image_size=32", "data.workers=0",
            "train.batch_size=8", "train.max_steps=3", "model.queue_size=64", "aggregation.queue_size=64",
            "model.head_hidden=64", "train.log_every=1", "optim.lr=0.3"])
        train(cfg, {str(work)!r})
        torch.save(built[0].state_dict(), {str(tmp_path)!r} + f"/rank{{os.environ['RANK']}}.pt")
    """))
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           str(script)], cwd=REPO, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "2 process(es) x 4 = batch 8" in proc.stdout
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    # Every parameter, the EMA teacher (statistics included) and both queues agree bit for bit. The student's
    # own BN running statistics are per process between DDP's broadcasts (rank 0's are the ones saved).
    for key in r0:
        if key.startswith("student.") and ("running_" in key or "num_batches" in key):
            continue
        assert torch.equal(r0[key], r1[key]), key
    # the queue received the keys of both processes: 3 steps x 2 views x 8 images
    assert r0["queue.pointer"].item() == (3 * 2 * 8) % 64
    # the checkpoint (rank 0 only) is complete and at the last step
    record = torch.load(work / "checkpoint_final.pth", weights_only=True)
    assert record["pretrain"]["step"] == 3
    assert torch.equal(record["state_dict"]["student.backbone.conv1.weight"], r0["student.backbone.conv1.weight"])
