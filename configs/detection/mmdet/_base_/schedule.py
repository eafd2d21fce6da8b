# Runtime shared by every detection protocol (detectron2's SOLVER and TEST defaults, in mmengine terms):
# SGD lr 0.02 at a total batch of 16 (2 images x 8 GPUs), momentum 0.9, weight decay 1e-4, linear warmup
# then steps x0.1; iteration-based; precise BN before evaluation. Protocol files set the iterations.
_base_ = ['mmdet::_base_/default_runtime.py']

custom_imports = dict(
    imports=['transfer.detection.mmdet_shared_head', 'transfer.detection.mmdet_voc_metric',
             'transfer.detection.mmdet_coco_metric', 'transfer.detection.mmdet_precise_bn'],
    allow_failed_imports=False)

protocol_gpus = 8  # the protocol's GPUs: train_dataloader.batch_size (2 per GPU) x 8 = IMS_PER_BATCH 16

max_iters = 90000
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
# Evaluated once, by the test loop after training (detectron2's TEST.EVAL_PERIOD 0): no validation loop.
val_cfg = None
test_cfg = dict(type='TestLoop')

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.02, momentum=0.9, weight_decay=0.0001))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=1000),  # WARMUP_ITERS 1000
    dict(type='MultiStepLR', by_epoch=False, begin=0, end=max_iters, milestones=[60000, 80000], gamma=0.1),
]

default_hooks = dict(
    logger=dict(type='LoggerHook', interval=20),  # detectron2 prints every 20 iterations, with the ETA
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=5000, max_keep_ckpts=2))
custom_hooks = [dict(type='PreciseBNHook', num_iters=200)]  # TEST.PRECISE_BN: ENABLED, NUM_ITER 200
log_processor = dict(by_epoch=False)
# The learning rate is tied to the total batch: keep it (the runner puts more images on each GPU).
auto_scale_lr = dict(enable=False, base_batch_size=16)
