# COCO detection: RetinaNet R50-FPN, 1x (90k iterations), boxes only -- mmdet's RetinaNet with the choices of
# the Mask R-CNN FPN protocol: SyncBN in the backbone (trained, FREEZE_AT 0) and the FPN, torchvision-style
# ResNet with RGB input, precise BN, iteration schedule. Total batch 16, lr 0.01 (RetinaNet's, detectron2's
# Base-RetinaNet and mmdet's), steps at 60k and 80k.
_base_ = ['mmdet::_base_/models/retinanet_r50_fpn.py', './_base_/schedule.py', './_base_/coco_instance.py']

norm_cfg = dict(type='SyncBN', requires_grad=True)
model = dict(
    backbone=dict(
        frozen_stages=-1,
        norm_cfg=norm_cfg,
        norm_eval=False,
        init_cfg=None),  # random init; the runner points it at --weights
    neck=dict(norm_cfg=norm_cfg))
optim_wrapper = dict(optimizer=dict(lr=0.01))

# Boxes only: the instance base's pipelines, loading the boxes without the masks.
train_pipeline = _base_.train_pipeline
train_pipeline[1] = dict(type='LoadAnnotations', with_bbox=True)
test_pipeline = _base_.test_pipeline
test_pipeline[2] = dict(type='LoadAnnotations', with_bbox=True)
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_evaluator = dict(metric=['bbox'])
