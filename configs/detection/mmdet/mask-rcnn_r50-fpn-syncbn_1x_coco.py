# COCO detection and instance segmentation: Mask R-CNN R50-FPN, 1x (90k iterations).
# SyncBN in the backbone (trained, FREEZE_AT 0), the FPN, the box head (4 conv + 1 fc) and the mask head;
# torchvision-style ResNet with RGB input; precise BN. Total batch 16, lr 0.02, steps at 60k and 80k.
_base_ = ['mmdet::_base_/models/mask-rcnn_r50_fpn.py', './_base_/schedule.py', './_base_/coco_instance.py']

norm_cfg = dict(type='SyncBN', requires_grad=True)
model = dict(
    data_preprocessor=dict(
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True),
    backbone=dict(
        depth=50,
        frozen_stages=-1,
        norm_cfg=norm_cfg,
        norm_eval=False,
        style='pytorch',
        init_cfg=None),  # random init; the runner points it at --weights
    neck=dict(norm_cfg=norm_cfg),
    roi_head=dict(
        bbox_head=dict(type='Shared4Conv1FCBBoxHead', conv_out_channels=256, norm_cfg=norm_cfg),
        mask_head=dict(norm_cfg=norm_cfg)))

max_iters = 90000
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=1000),
    dict(type='MultiStepLR', by_epoch=False, begin=0, end=max_iters, milestones=[60000, 80000], gamma=0.1),
]
