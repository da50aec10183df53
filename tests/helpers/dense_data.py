"""Tiny dense-task data sets in their libraries' layouts: COCO instances (mmdet) and ADE20K masks (mmseg)."""
import json
import os
import os.path as osp

import mmcv
import numpy as np

# COCO's category ids of mmdet's 80 classes. The annotation file lists all of them, as COCO's does: mmdet's
# CocoMetric maps a predicted label to the file's category of the same class name.
COCO_IDS = [
    *range(1, 12), *range(13, 26), 27, 28, *range(31, 45), *range(46, 66), 67, 70, *range(72, 83), *range(84, 91)
]
USED_IDS = [1, 3, 18]  # person, car, dog


def write_coco(root: str, num_images: int = 3, size=(96, 112), seed: int = 0) -> str:
    """A COCO-format instance set (``annotations/instances_{train,val}2017.json``, ``{train,val}2017/*.jpg``).

    Each image holds 2 or 3 filled polygons (a rectangle or a triangle) on a noisy background; val = train.
    """
    import cv2
    import mmcv
    rng = np.random.default_rng(seed)
    h, w = size
    images, annotations = [], []
    for i in range(num_images):
        img = rng.integers(0, 60, (h, w, 3), dtype=np.uint8)
        for _ in range(2 + i % 2):
            cat = USED_IDS[len(annotations) % len(USED_IDS)]
            x0, y0 = int(rng.integers(0, w - 40)), int(rng.integers(0, h - 40))
            bw, bh = int(rng.integers(24, 40)), int(rng.integers(24, 40))
            if len(annotations) % 2:
                poly = [x0, y0, x0 + bw, y0, x0 + bw, y0 + bh, x0, y0 + bh]
            else:
                poly = [x0, y0 + bh, x0 + bw // 2, y0, x0 + bw, y0 + bh]
            pts = np.array(poly, dtype=np.int32).reshape(-1, 2)
            mask = np.zeros((h, w), np.uint8)
            cv2.fillPoly(mask, [pts], 1)
            img[mask.astype(bool)] = (60 + 60 * (cat % 3), 200 - 50 * (cat % 3), 120)
            ys, xs = np.nonzero(mask)
            x, y = float(xs.min()), float(ys.min())
            box = [x, y, float(xs.max()) + 1 - x, float(ys.max()) + 1 - y]
            annotations.append(
                dict(
                    id=len(annotations) + 1,
                    image_id=i + 1,
                    category_id=cat,
                    iscrowd=0,
                    segmentation=[[float(v) for v in poly]],
                    area=float(mask.sum()),
                    bbox=box))
        name = f'{i:06d}.jpg'
        images.append(dict(id=i + 1, file_name=name, height=h, width=w))
        for split in ('train2017', 'val2017'):
            mmcv.imwrite(img, osp.join(root, split, name))
    from mmdet.datasets import CocoDataset
    names = CocoDataset.METAINFO['classes']
    coco = dict(
        images=images,
        annotations=annotations,
        categories=[dict(id=i, name=n, supercategory='thing') for i, n in zip(COCO_IDS, names)])
    os.makedirs(osp.join(root, 'annotations'), exist_ok=True)
    for split in ('train', 'val'):
        with open(osp.join(root, 'annotations', f'instances_{split}2017.json'), 'w') as f:
            json.dump(coco, f)
    return root


NUM_CLASSES = 150

IMAGE_SIZE = (72, 96)  # (h, w): resized to 4 x 4 patches high and wider: slide inference takes 2 windows


def write_ade_folder(root: str, count: int = 3, size=IMAGE_SIZE, seed: int = 0) -> str:
    """``count`` random photos with ADE20K-150 masks (0 = other, 1..150) in ADE20K's layout, both splits.

    Each mask has a few rectangles of random classes on an "other" background, as ADE20K's annotation PNGs.
    Returns ``root`` (the ``ADEChallengeData2016`` folder).
    """
    rng = np.random.default_rng(seed)
    for split in ('training', 'validation'):
        for i in range(count):
            img = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
            mask = np.zeros(size, dtype=np.uint8)
            for _ in range(3):
                y, x = rng.integers(0, size[0] // 2), rng.integers(0, size[1] // 2)
                mask[y:y + size[0] // 2, x:x + size[1] // 2] = rng.integers(1, NUM_CLASSES + 1)
            mmcv.imwrite(img, osp.join(root, 'images', split, f'ADE_{split}_{i:08d}.jpg'))
            mmcv.imwrite(mask, osp.join(root, 'annotations', split, f'ADE_{split}_{i:08d}.png'))
    return root
