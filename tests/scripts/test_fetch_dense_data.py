"""scripts/fetch_dense_data.py: its layout functions, run on tiny synthetic inputs (no network), write folders
that mmdet's CocoDataset / CocoMetric and mmseg's ADE20KDataset / NYUDataset read with the expected instances,
classes and depths; reruns are no-ops; bad inputs give clear errors. A last test checks the real data when
the script has been run."""
import json
import os
import os.path as osp
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from ..helpers.scripts import load_script

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
VOC_NAMES = ('_background_', 'aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car', 'cat', 'chair', 'cow',
             'diningtable', 'dog', 'horse', 'motorbike', 'person', 'potted plant', 'sheep', 'sofa', 'train',
             'tv/monitor')
SIZES = {'a': (48, 64), 'b': (40, 56)}  # (height, width)

fetch = load_script('scripts/fetch_dense_data.py')

pytestmark = pytest.mark.usefixtures('one_thread')


def rect(x0, y0, x1, y1):
    return [x0, y0, x1, y0, x1, y1, x0, y1]


def labelme_example(root) -> str:
    """A labelme-style instance-segmentation example: COCO JSON (ids from 0, folder in file_name, VOC
    categories, labelme's own area/bbox), JPEGs, class_names.txt and int32 class masks (-1 = ignore)."""
    root = str(root)
    os.makedirs(osp.join(root, 'data_dataset_coco', 'JPEGImages'))
    os.makedirs(osp.join(root, 'data_dataset_voc', 'SegmentationClassNpy'))
    rng = np.random.default_rng(0)
    for stem, (h, w) in SIZES.items():
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(
            osp.join(root, 'data_dataset_coco', 'JPEGImages', f'{stem}.jpg'))
    anns = [(0, 1, [rect(10, 10, 30, 20)]), (0, 15, [rect(2, 4, 12, 24), rect(40, 30, 50, 40)]),
            (1, 18, [rect(0, 0, 20, 10)]), (1, 20, [rect(30, 20, 40, 30)])]
    coco = dict(
        images=[
            dict(id=i, file_name=f'JPEGImages/{s}.jpg', height=h, width=w)
            for i, (s, (h, w)) in enumerate(SIZES.items())
        ],
        annotations=[
            dict(id=i, image_id=img, category_id=cat, segmentation=seg, area=999.0, bbox=[0, 0, 1, 1], iscrowd=0)
            for i, (img, cat, seg) in enumerate(anns)
        ],
        categories=[dict(id=i, name=n) for i, n in enumerate(VOC_NAMES)])
    with open(osp.join(root, 'data_dataset_coco', 'annotations.json'), 'w') as f:
        json.dump(coco, f)
    with open(osp.join(root, 'data_dataset_voc', 'class_names.txt'), 'w') as f:
        f.write('\n'.join(VOC_NAMES))
    a = np.zeros(SIZES['a'], np.int32)
    a[4:24, 2:12] = 15  # person
    a[10:20, 10:30] = 1  # aeroplane
    a[0] = -1
    b = np.full(SIZES['b'], 20, np.int32)  # tv/monitor
    b[0:10, 0:20] = 18  # sofa
    b[20:30, 30:40] = 19  # train: no ADE20K class
    np.save(osp.join(root, 'data_dataset_voc', 'SegmentationClassNpy', 'a.npy'), a)
    np.save(osp.join(root, 'data_dataset_voc', 'SegmentationClassNpy', 'b.npy'), b)
    return root


def coco_dataset(root, split='val2017'):
    from mmdet.datasets import CocoDataset
    return CocoDataset(
        data_root=root,
        ann_file=f'annotations/instances_{split}.json',
        data_prefix=dict(img=f'{split}/'),
        test_mode=True,
        pipeline=[
            dict(type='mmdet.LoadImageFromFile'),
            dict(type='mmdet.LoadAnnotations', with_bbox=True, with_mask=True)
        ])


def test_coco_layout_read_by_mmdet(tmp_path):
    example = labelme_example(tmp_path / 'labelme')
    out = str(tmp_path / 'coco')
    assert fetch.write_folder(out, lambda dst: fetch.write_coco(example, dst))
    assert sorted(os.listdir(out)) == ['annotations', 'train2017', 'val2017']
    with open(osp.join(out, 'annotations', 'instances_train2017.json')) as f:
        coco = json.load(f)
    assert [(c['id'], c['name']) for c in coco['categories']][:5] == [(1, 'person'), (2, 'bicycle'), (3, 'car'),
                                                                      (4, 'motorcycle'), (5, 'airplane')]
    assert len(coco['categories']) == 80 and coco['categories'][-1] == dict(id=90, name='toothbrush')
    assert [i['id'] for i in coco['images']] == [1, 2]
    # ids from 1, official COCO ids, areas rasterised by pycocotools, boxes = vertex extents
    assert [(a['id'], a['image_id'], a['category_id'], a['area'], a['bbox'], a['iscrowd'])
            for a in coco['annotations']] == [(1, 1, 5, 200.0, [10.0, 10.0, 20.0, 10.0], 0),
                                              (2, 1, 1, 300.0, [2.0, 4.0, 48.0, 36.0], 0),
                                              (3, 2, 63, 200.0, [0.0, 0.0, 20.0, 10.0], 0),
                                              (4, 2, 72, 100.0, [30.0, 20.0, 10.0, 10.0], 0)]

    dataset = coco_dataset(out)
    assert len(dataset) == 2
    names = dataset.metainfo['classes']
    first, second = dataset[0], dataset[1]
    assert first['img'].shape == (48, 64, 3) and second['img'].shape == (40, 56, 3)
    assert [names[i] for i in first['gt_bboxes_labels']] == ['airplane', 'person']
    assert [names[i] for i in second['gt_bboxes_labels']] == ['couch', 'tv']
    np.testing.assert_allclose(first['gt_bboxes'].numpy(), [[10, 10, 30, 20], [2, 4, 50, 40]])
    assert first['gt_masks'].to_ndarray().sum(axis=(1, 2)).tolist() == [200, 300]


def test_coco_metric_scores_ground_truth_as_perfect(tmp_path):
    """pycocotools' evaluation accepts the file: the ground truth, submitted as predictions, scores 1.0."""
    from mmdet.evaluation import CocoMetric
    out = str(tmp_path / 'coco')
    fetch.write_folder(out, lambda dst: fetch.write_coco(labelme_example(tmp_path / 'labelme'), dst))
    dataset = coco_dataset(out)
    metric = CocoMetric(ann_file=osp.join(out, 'annotations', 'instances_val2017.json'), metric=['bbox', 'segm'])
    metric.dataset_meta = dataset.metainfo
    for item in dataset:
        masks = torch.as_tensor(item['gt_masks'].to_ndarray().astype(bool))
        pred = dict(
            bboxes=item['gt_bboxes'].tensor,
            scores=torch.ones(len(masks)),
            labels=torch.as_tensor(item['gt_bboxes_labels']),
            masks=masks)
        metric.process({}, [dict(img_id=item['img_id'], ori_shape=item['ori_shape'], pred_instances=pred)])
    results = metric.evaluate(len(dataset))
    assert results['coco/bbox_mAP'] == pytest.approx(1.0) and results['coco/segm_mAP'] == pytest.approx(1.0)


def test_ade_layout_read_by_mmseg(tmp_path):
    from mmseg.datasets import ADE20KDataset
    example = labelme_example(tmp_path / 'labelme')
    out = str(tmp_path / 'ade')
    assert fetch.write_folder(out, lambda dst: fetch.write_ade(example, dst))
    label_png = osp.join(out, 'ADEChallengeData2016', 'annotations', 'training', 'a.png')
    assert Image.open(label_png).mode == 'L'
    for split in ('training', 'validation'):
        dataset = ADE20KDataset(
            data_root=osp.join(out, 'ADEChallengeData2016'),
            data_prefix=dict(img_path=f'images/{split}', seg_map_path=f'annotations/{split}'),
            pipeline=[dict(type='mmseg.LoadImageFromFile'),
                      dict(type='mmseg.LoadAnnotations')])
        assert len(dataset) == 2
        a, b = dataset[0]['gt_seg_map'], dataset[1]['gt_seg_map']
        # ADE20K-150 (1-based): person 13, airplane 91, sofa 24, television receiver 90; minus 1 after
        # reduce_zero_label, and 0 (other, ignore, VOC 'train') becomes 255
        expected_a = np.full(SIZES['a'], 255, np.uint8)
        expected_a[4:24, 2:12] = 12
        expected_a[10:20, 10:30] = 90
        expected_a[0] = 255
        expected_b = np.full(SIZES['b'], 89, np.uint8)
        expected_b[0:10, 0:20] = 23
        expected_b[20:30, 30:40] = 255
        np.testing.assert_array_equal(a, expected_a)
        np.testing.assert_array_equal(b, expected_b)
        names = dataset.metainfo['classes']
        assert [names[i] for i in (12, 90, 23, 89)] == ['person', 'airplane', 'sofa', 'television receiver']
        assert dataset[0]['img'].shape == (48, 64, 3)


def test_depth_from_disparity_by_hand():
    disparity = np.array([[15.0, np.nan], [np.inf, -5.0]])
    # f * B / (d + doffs) = 100 * 50 / (15 + 5) = 250 mm; NaN, inf and d + doffs <= 0 are invalid -> 0
    depth = fetch.disparity_to_depth_mm(disparity, focal=100., baseline_mm=50., doffs=5.)
    assert depth.dtype == np.uint16 and depth.tolist() == [[250, 0], [0, 0]]
    # the Middlebury motorcycle calibration: d = 50 px -> 994.978 * 193.001 / 81.086 = 2368.23 mm
    assert fetch.disparity_to_depth_mm(
        np.array([[50.0]]), fetch.MOTORCYCLE_FOCAL_PX, fetch.MOTORCYCLE_BASELINE_MM,
        fetch.MOTORCYCLE_DOFFS_PX)[0, 0] == 2368
    with pytest.raises(fetch.StepError, match='uint16'):
        fetch.disparity_to_depth_mm(np.array([[-4.99]]), focal=100., baseline_mm=50., doffs=5.)
    with pytest.raises(fetch.StepError, match='2-D'):
        fetch.disparity_to_depth_mm(np.zeros(3), 1., 1., 1.)


def test_nyu_layout_read_by_mmseg(tmp_path):
    from mmseg.datasets import NYUDataset
    height, width, frame = 6, 10, (4, 8)
    image = np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8)
    disparity = np.tile(np.arange(width, dtype=np.float64) + 15., (height, 1))  # column x: d = x + 15
    disparity[2, 1] = np.nan
    out = str(tmp_path / 'nyu')
    assert fetch.write_folder(
        out, lambda dst: fetch.write_nyu(image, disparity, dst, focal=100., baseline_mm=50., doffs=5., frame=frame))
    depths = {}
    for split in ('train', 'test'):
        dataset = NYUDataset(
            data_root=out,
            data_prefix=dict(img_path=f'images/{split}', depth_map_path=f'annotations/{split}'),
            pipeline=[
                dict(type='mmseg.LoadImageFromFile'),
                dict(type='mmseg.LoadDepthAnnotation', depth_rescale_factor=1e-3)
            ])
        assert len(dataset) == 1
        item = dataset[0]
        assert item['img'].shape == (4, 8, 3) and item['gt_depth_map'].shape == (4, 8)
        depths[split] = item['gt_depth_map']
    # rows 1..4 (centred); train = columns 0..7, test = columns 2..9; depth = 5000 / (x + 20) mm, in metres
    expected = np.round(5000. / (np.arange(width) + 20.)) / 1000.
    np.testing.assert_allclose(depths['train'][0], expected[:8], rtol=1e-6)
    np.testing.assert_allclose(depths['test'][0], expected[2:], rtol=1e-6)
    assert depths['train'][1, 1] == 0 and depths['test'][1].min() > 0  # NaN at (2, 1): train only
    assert depths['train'][0, 0] == pytest.approx(0.25)


def test_rerun_is_a_no_op(tmp_path, capsys):
    example = labelme_example(tmp_path / 'labelme')
    out, cache = tmp_path / 'dense', tmp_path / 'cache'
    fetch.write_folder(str(out / 'coco'), lambda dst: fetch.write_coco(example, dst))
    fetch.write_folder(str(out / 'ade'), lambda dst: fetch.write_ade(example, dst))
    fetch.write_folder(
        str(out / 'nyu'),
        lambda dst: fetch.write_nyu(np.zeros((6, 10, 3), np.uint8), np.ones((6, 10)), dst, frame=(4, 8)))
    fetch.write_readme(str(out))
    before = {p: p.stat().st_mtime_ns for p in out.rglob('*')}
    assert not fetch.write_folder(str(out / 'coco'), lambda dst: pytest.fail('rewrote a finished folder'))
    capsys.readouterr()
    assert fetch.main(['--out', str(out), '--cache', str(cache), '--no-verify']) == 0
    printed = capsys.readouterr().out.splitlines()
    assert all(line.startswith(('[skip]', 'done:')) for line in printed), printed
    assert {p: p.stat().st_mtime_ns for p in out.rglob('*')} == before
    assert not cache.exists()  # nothing downloaded


def test_interrupted_write_leaves_no_folder(tmp_path):
    out = str(tmp_path / 'coco')

    def broken(dst):
        os.makedirs(dst)
        raise fetch.StepError('boom')

    with pytest.raises(fetch.StepError, match='boom'):
        fetch.write_folder(out, broken)
    assert not osp.exists(out)
    assert fetch.write_folder(out, lambda dst: os.makedirs(osp.join(dst, 'x')))  # stale .part replaced
    assert os.listdir(out) == ['x'] and not osp.exists(out + '.part')


def corrupt_json(root):
    with open(osp.join(root, 'data_dataset_coco', 'annotations.json'), 'w') as f:
        f.write('{"images": [')


def missing_image(root):
    os.remove(osp.join(root, 'data_dataset_coco', 'JPEGImages', 'b.jpg'))


def background_instance(root):
    path = osp.join(root, 'data_dataset_coco', 'annotations.json')
    with open(path) as f:
        coco = json.load(f)
    coco['annotations'][0]['category_id'] = 0
    with open(path, 'w') as f:
        json.dump(coco, f)


def two_point_polygon(root):
    path = osp.join(root, 'data_dataset_coco', 'annotations.json')
    with open(path) as f:
        coco = json.load(f)
    coco['annotations'][1]['segmentation'] = [[1, 1, 5, 5]]
    with open(path, 'w') as f:
        json.dump(coco, f)


@pytest.mark.parametrize('damage, message', [
    (corrupt_json, r'cannot read .*annotations\.json'),
    (missing_image, r'cannot read image .*b\.jpg'),
    (background_instance, r"annotation 0: category '_background_' has no COCO counterpart"),
    (two_point_polygon, r'annotation 1: segmentation must be polygons of >= 3'),
])
def test_coco_bad_input(tmp_path, damage, message):
    example = labelme_example(tmp_path / 'labelme')
    damage(example)
    with pytest.raises(fetch.StepError, match=message):
        fetch.write_folder(str(tmp_path / 'coco'), lambda dst: fetch.write_coco(example, dst))
    assert not osp.exists(tmp_path / 'coco')


def bad_class_value(root):
    np.save(osp.join(root, 'data_dataset_voc', 'SegmentationClassNpy', 'a.npy'), np.full(SIZES['a'], 21))


def wrong_mask_shape(root):
    np.save(osp.join(root, 'data_dataset_voc', 'SegmentationClassNpy', 'b.npy'), np.zeros((5, 5), np.int32))


def corrupt_npy(root):
    with open(osp.join(root, 'data_dataset_voc', 'SegmentationClassNpy', 'a.npy'), 'wb') as f:
        f.write(b'not a numpy file')


def no_masks(root):
    for name in ('a.npy', 'b.npy'):
        os.remove(osp.join(root, 'data_dataset_voc', 'SegmentationClassNpy', name))


@pytest.mark.parametrize('damage, message', [
    (bad_class_value, r'a\.npy: class values \[21\] outside 0\.\.20'),
    (wrong_mask_shape, r'b\.npy is \(5, 5\), its photo .* is \(40, 56\)'),
    (corrupt_npy, r'cannot read .*a\.npy'),
    (no_masks, r'no class masks \(\*\.npy\) in'),
])
def test_ade_bad_input(tmp_path, damage, message):
    example = labelme_example(tmp_path / 'labelme')
    damage(example)
    with pytest.raises(fetch.StepError, match=message):
        fetch.write_folder(str(tmp_path / 'ade'), lambda dst: fetch.write_ade(example, dst))


def test_nyu_bad_input(tmp_path):
    with pytest.raises(fetch.StepError, match=r'disparity shape \(6, 9\) != image shape \(6, 10\)'):
        fetch.write_nyu(np.zeros((6, 10, 3), np.uint8), np.ones((6, 9)), str(tmp_path / 'a'), frame=(4, 8))
    with pytest.raises(fetch.StepError, match='smaller than a 640x480 frame'):
        fetch.write_nyu(np.zeros((6, 10, 3), np.uint8), np.ones((6, 10)), str(tmp_path / 'b'))
    with pytest.raises(fetch.StepError, match='RGB uint8'):
        fetch.write_nyu(np.zeros((6, 10), np.uint8), np.ones((6, 10)), str(tmp_path / 'c'), frame=(4, 8))


def test_extract_example_and_sdist_checks(tmp_path):
    """Extraction takes only the example's files from the sdist, once; a wrong or incomplete sdist fails."""
    example = labelme_example(tmp_path / 'labelme')
    cache = tmp_path / 'cache'
    cache.mkdir()
    sdist = str(cache / fetch.SDIST_NAME)
    with tarfile.open(sdist, 'w:gz') as archive:
        archive.add(example, arcname=fetch.EXAMPLE_DIR)
        archive.add(osp.join(example, 'data_dataset_voc', 'class_names.txt'), arcname='labelme-6.3.1/setup.py')
    extracted = fetch.extract_example(sdist, str(cache))
    assert extracted == osp.join(str(cache), fetch.EXAMPLE_DIR)
    assert sorted(os.listdir(osp.join(extracted, 'data_dataset_coco', 'JPEGImages'))) == ['a.jpg', 'b.jpg']
    assert not osp.exists(cache / 'labelme-6.3.1' / 'setup.py')
    assert fetch.extract_example(sdist, str(cache)) == extracted  # second call: skipped
    # a local file that is not the published sdist is refused before anything is extracted from it
    with pytest.raises(fetch.StepError, match='SHA-256'):
        fetch.fetch_sdist(str(cache))

    incomplete = str(tmp_path / 'incomplete.tar.gz')
    with tarfile.open(incomplete, 'w:gz') as archive:
        archive.add(osp.join(example, 'data_dataset_coco'), arcname=f'{fetch.EXAMPLE_DIR}/data_dataset_coco')
    with pytest.raises(fetch.StepError, match='has no .*class_names.txt'):
        fetch.extract_example(incomplete, str(tmp_path / 'other_cache'))


DENSE = osp.join(REPO, 'data', 'dense')


@pytest.mark.skipif(not osp.isfile(osp.join(DENSE, 'README.txt')), reason='run scripts/fetch_dense_data.py')
def test_real_dense_data():
    """The fetched data as the real dataset classes read it: 12 instances, 6 ADE20K classes, 2-5 m depth."""
    stats = fetch.verify(DENSE)
    for split in ('train2017', 'val2017'):
        assert stats[f'coco/{split}'] == dict(
            images=3, instances=dict(person=6, bottle=1, chair=1, couch=1, bus=2, car=1))
    assert set(stats['ade/training']['pixels']) == {'person', 'bottle', 'chair', 'sofa', 'bus', 'car', 'ignore'}
    for name in ('train/motorcycle_00000.jpg', 'test/motorcycle_00001.jpg'):
        nyu = stats[f'nyu/{name}']
        assert nyu['shape'] == (480, 640, 3) and 2.0 < nyu['depth_m'][0] < nyu['depth_m'][1] < 5.1
