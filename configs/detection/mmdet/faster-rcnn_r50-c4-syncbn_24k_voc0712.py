# VOC07+12 detection: Faster R-CNN R50-C4, 24k iterations (MoCo / DenseCL protocol; report the mean of 5 trials).
# Total batch 16 (2 per GPU x 8), lr 0.02, steps at 18k and 22k, warmup 100 iterations.
_base_ = ['./_base_/rcnn-c4-syncbn.py', './_base_/voc0712.py']

model = dict(roi_head=dict(bbox_head=dict(num_classes=20)))

max_iters = 24000
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=100),  # WARMUP_ITERS 100
    dict(type='MultiStepLR', by_epoch=False, begin=0, end=max_iters, milestones=[18000, 22000], gamma=0.1),
]
