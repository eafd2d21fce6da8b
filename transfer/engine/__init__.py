"""Shared plumbing for the runners built on mmengine (mmdet detection, mmseg segmentation).

The pieces, one per file:
- `config.load_config(path, overrides)`: an mmengine Config with key=value overrides applied.
- `devices.resolve_gpus(n)`, `devices.adapt_to_devices(cfg, gpus)`: SyncBN -> BN on one
  process, keep the protocol's total batch on fewer GPUs (or scale lr and schedule), notes.
- `schedule.shorten_schedule(cfg, max_iters)`: scale an iteration-based schedule down.
- `launch.relaunch_with_torchrun(gpus)`: re-run this command under torchrun for several GPUs.
- `compat.trust_checkpoints_in(work_dir)`: mmengine loads checkpoints by the project's one trust policy.
- `rng_state.add_rng_state_hook(cfg)`: checkpoints keep the generators' states; a resumed run ends as an
  uninterrupted one.
- `internals`: the only calls into an engine's private API, each tested against the installed version.
- `task.run_mm_task(...)`: the whole runner skeleton: dataset check, weights conversion,
  config, devices, schedule, trials, train + test with mmengine's Runner (resuming), and
  WORK_DIR/metrics.json.
"""
