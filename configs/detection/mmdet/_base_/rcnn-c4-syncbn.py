# Base-RCNN-C4-BN: mmdet's C4 Faster R-CNN with the settings of MoCo's detectron2 base:
# SyncBN everywhere and trained (norm_eval False, FREEZE_AT 0), torchvision-style ResNet (stride in the
# 3x3 conv, STRIDE_IN_1X1 False), RGB input with the torchvision mean/std, res5 shared head initialised from
# the same checkpoint as the backbone and followed by an extra norm (Res5ROIHeadsExtraNorm).
# RPN test: 6000 pre-NMS, 1000 post-NMS proposals (as in the mmdet base).
_base_ = ['mmdet::_base_/models/faster-rcnn_r50-caffe-c4.py', './schedule.py']

norm_cfg = dict(type='SyncBN', requires_grad=True)
model = dict(
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_size_divisor=32),
    backbone=dict(
        depth=50,
        frozen_stages=-1,
        norm_cfg=norm_cfg,
        norm_eval=False,
        style='pytorch',
        init_cfg=None),  # random init; the runner points it at --weights
    roi_head=dict(
        shared_head=dict(
            type='ResLayerExtraNorm',
            depth=50,
            norm_cfg=norm_cfg,
            norm_eval=False,
            style='pytorch',
            init_cfg=None)))  # the runner points it at --weights too (its keys are torchvision's layer4.*)
