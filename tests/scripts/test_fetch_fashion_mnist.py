"""scripts/fetch_fashion_mnist.py: IDX parsing, the fixed split and the written layout (synthetic IDX files)."""
import gzip
import os.path as osp

import numpy as np
import pytest

from ..helpers.scripts import load_script

fetch = load_script('scripts/fetch_fashion_mnist.py')


def write_idx(path: str, array: np.ndarray) -> None:
    header = (0x0800 | array.ndim).to_bytes(4, 'big') + b''.join(d.to_bytes(4, 'big') for d in array.shape)
    with gzip.open(path, 'wb') as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_read_idx_round_trip_and_bad_files(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (5, 28, 28))
    write_idx(str(tmp_path / 'img.gz'), images)
    assert np.array_equal(fetch.read_idx(str(tmp_path / 'img.gz')), images)
    with gzip.open(tmp_path / 'bad.gz', 'wb') as f:
        f.write((0x0D03).to_bytes(4, 'big') + b'\0' * 12)
    with pytest.raises(fetch.StepError, match='not a uint8 IDX file'):
        fetch.read_idx(str(tmp_path / 'bad.gz'))
    with gzip.open(tmp_path / 'short.gz', 'wb') as f:
        f.write((0x0801).to_bytes(4, 'big') + (10).to_bytes(4, 'big') + b'\0' * 3)
    with pytest.raises(fetch.StepError, match='3 values, header says'):
        fetch.read_idx(str(tmp_path / 'short.gz'))


def test_split_is_fixed_disjoint_and_balanced():
    labels = np.repeat(np.arange(10), 1200)
    splits = fetch.split_train(labels)
    assert len(splits['val']) == 5000 and len(splits['unlabelled']) == 7000
    assert not set(splits['val']) & set(splits['unlabelled'])
    assert set(splits['labelled_1k']) <= set(splits['labelled_5k']) <= set(splits['unlabelled'])
    for name, per_class in (('val', 500), ('labelled_1k', 100), ('labelled_5k', 500)):
        assert np.bincount(labels[splits[name]]).tolist() == [per_class] * 10, name
    again = fetch.split_train(labels)
    assert all(np.array_equal(splits[k], again[k]) for k in splits)


def test_write_dataset_layout(tmp_path):
    rng = np.random.default_rng(1)
    idx = tmp_path / 'idx'
    idx.mkdir()
    train_labels = np.repeat(np.arange(10), 2)
    write_idx(str(idx / 'train-images-idx3-ubyte.gz'), rng.integers(0, 256, (20, 28, 28)))
    write_idx(str(idx / 'train-labels-idx1-ubyte.gz'), train_labels)
    write_idx(str(idx / 't10k-images-idx3-ubyte.gz'), rng.integers(0, 256, (3, 28, 28)))
    write_idx(str(idx / 't10k-labels-idx1-ubyte.gz'), np.array([1, 2, 3]))
    out = tmp_path / 'fashion_mnist'
    fetch.write_dataset(str(idx), str(out))
    assert (out / 'meta' /
            'test.txt').read_text().splitlines() == ['test/00000.png 1', 'test/00001.png 2', 'test/00002.png 3']
    val = (out / 'meta' / 'val.txt').read_text().splitlines()
    name, label = val[0].split()
    assert osp.isfile(out / 'images' / name) and int(label) == train_labels[int(name[6:11])]
    from PIL import Image
    assert Image.open(out / 'images' / 'train' / '00000.png').size == (28, 28)
    assert len((out / 'meta' / 'classes.txt').read_text().splitlines()) == 10


def test_a_tampered_deb_is_refused(tmp_path):
    (tmp_path / fetch.DEB_NAME).write_bytes(b'not the package')
    with pytest.raises(fetch.StepError, match='SHA-256'):
        fetch.fetch_deb(str(tmp_path))
