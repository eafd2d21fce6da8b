# VOC07+12: train on VOC2007 trainval + VOC2012 trainval, test on VOC2007 test.
# Shorter side 480..800 (step 32) for training, 800 for testing (MIN_SIZE_TRAIN / MIN_SIZE_TEST).
_base_ = ['mmdet::_base_/datasets/voc0712.py']

data_root = 'data/VOCdevkit/'
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='RandomChoiceResize', scales=[(1333, s) for s in range(480, 801, 32)], keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(1333, 800), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=2,  # per GPU
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        _delete_=True,
        type='ConcatDataset',
        ignore_keys=['dataset_type'],
        datasets=[
            dict(type='VOCDataset', data_root=data_root, ann_file=f'VOC{year}/ImageSets/Main/trainval.txt',
                 data_prefix=dict(sub_data_root=f'VOC{year}/'), pipeline=train_pipeline,
                 filter_cfg=dict(filter_empty_gt=True, min_size=32))  # no bbox_min_size: small objects train too
            for year in (2007, 2012)
        ]))
test_dataloader = dict(
    dataset=dict(
        data_root=data_root,
        ann_file='VOC2007/ImageSets/Main/test.txt',
        data_prefix=dict(sub_data_root='VOC2007/'),
        pipeline=test_pipeline))
val_dataloader = None
# detectron2's PascalVOCDetectionEvaluator: AP (IoU .50:.95), AP50, AP75, VOC07 11-point, all 20 classes.
test_evaluator = dict(_delete_=True, type='PascalVOCAPMetric', eval_mode='11points')
val_evaluator = None
