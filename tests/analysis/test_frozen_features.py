"""k-NN and linear-probe evaluation of frozen features, by value on hand-made features."""
import pytest
import torch

from fdclip_mm.analysis.frozen_features import knn_accuracy, linear_probe_accuracy, pooled_features, read_annotations


def test_knn_votes_by_weighted_cosine_similarity():
    train = torch.tensor([[1., 0.], [0.9, 0.1], [0., 1.], [0.1, 0.9]])
    labels = torch.tensor([0, 0, 1, 1])
    test = torch.tensor([[5., 0.2], [0.3, 4.]])  # scale does not matter: cosine
    assert knn_accuracy(train, labels, test, torch.tensor([0, 1]), k=2) == 100.0
    assert knn_accuracy(train, labels, test, torch.tensor([1, 1]), k=2) == 50.0
    # k = all: the weights decide (the two near neighbours outweigh the far ones)
    assert knn_accuracy(train, labels, test, torch.tensor([0, 1]), k=4, temperature=0.1) == 100.0


def test_linear_probe_separates_separable_data_and_not_noise():
    gen = torch.Generator().manual_seed(0)
    centres = torch.randn(3, 8, generator=gen) * 4
    labels = torch.arange(3).repeat(40)
    feats = centres[labels] + torch.randn(120, 8, generator=gen)
    assert linear_probe_accuracy(feats[:90], labels[:90], feats[90:], labels[90:]) == 100.0
    noise = torch.randn(120, 8, generator=gen)
    assert linear_probe_accuracy(noise[:90], labels[:90], noise[90:], labels[90:]) < 70.0


def test_pooled_features_are_the_mean_patch_token():

    class Tokens(torch.nn.Module):

        def forward_features(self, x):
            return x  # (B, 1 + N, C)

    x = torch.arange(24.).reshape(2, 3, 4)
    torch.testing.assert_close(pooled_features(Tokens(), [x]), x[:, 1:].mean(1))


def test_read_annotations(tmp_path):
    ann = tmp_path / 'ann.txt'
    ann.write_text('a/0.png 3\nb/1.png 7\n\n')
    paths, labels = read_annotations(str(ann), 'root', limit=None)
    assert paths == ['root/a/0.png', 'root/b/1.png'] and labels.tolist() == [3, 7]
    assert read_annotations(str(ann), 'root', limit=1)[0] == ['root/a/0.png']
    ann.write_text('no-label\n')
    with pytest.raises(ValueError, match='ann.txt:1: expected "path label"'):
        read_annotations(str(ann), 'root')
