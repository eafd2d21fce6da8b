# COCO Mask R-CNN R50-FPN, 2x (mmselfsup's mask-rcnn_r50_fpn_ms-2x benchmark): the 1x protocol with 180k
# iterations, steps at 120k and 160k.
_base_ = ['./mask-rcnn_r50-fpn-syncbn_1x_coco.py']

max_iters = 180000
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=1000),
    dict(type='MultiStepLR', by_epoch=False, begin=0, end=max_iters, milestones=[120000, 160000], gamma=0.1),
]
