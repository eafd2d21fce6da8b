# COCO detection and instance segmentation: Mask R-CNN R50-C4, 1x (90k iterations).
# The C4 base with MASK_ON: the mask head sits on the same res5 features as the box head.
# Total batch 16 (2 per GPU x 8), lr 0.02, steps at 60k and 80k, warmup 1000 iterations.
_base_ = ['./_base_/rcnn-c4-syncbn.py', './_base_/coco_instance.py']

model = dict(
    type='MaskRCNN',
    data_preprocessor=dict(pad_mask=True),
    roi_head=dict(
        mask_roi_extractor=None,  # share the box RoI features (res5 output)
        mask_head=dict(
            type='FCNMaskHead',
            num_convs=0,
            in_channels=2048,
            conv_out_channels=256,
            num_classes=80,
            loss_mask=dict(type='CrossEntropyLoss', use_mask=True, loss_weight=1.0))),
    train_cfg=dict(rcnn=dict(mask_size=14)),
    test_cfg=dict(rcnn=dict(mask_thr_binary=0.5)))

max_iters = 90000
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=1000),
    dict(type='MultiStepLR', by_epoch=False, begin=0, end=max_iters, milestones=[60000, 80000], gamma=0.1),
]
