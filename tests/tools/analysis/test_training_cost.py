"""tools/analysis/training_cost.py: the report of appendix A's numbers and of a measured run, and a config's cost."""
import pytest
from mmengine.config import Config

from fdclip_mm.analysis.training_cost import DistillationCost, MeasuredRun, paper_cost
from ...helpers.scripts import load_script

tool = load_script('tools/analysis/training_cost.py')
cost_from_config = load_script('tools/analysis/training_cost_config.py').cost_from_config


def test_the_report_of_the_paper_and_of_a_measured_run():
    assert 'additional cost: 384M/12.8B = 3.0%' in tool.format_cost(paper_cost())
    assert tool.format_count(1234) == '1.234K'
    assert 'teacher' not in tool.format_cost(DistillationCost(10, 100))
    report = tool.format_cost(paper_cost(), MeasuredRun(20, 7.5, 8, 2, 'GPU'))
    assert '20 iterations x 8 images x 2 GPU process(es) = 320 images in 7.5 s' in report
    assert 'GPU-hours' in report


def test_config_of_the_paper_counts_imagenet_and_clip(tmp_path):
    cfg = Config(
        dict(
            default_scope='mmpretrain',
            train_cfg=dict(max_epochs=300),
            model=dict(
                type='fdclip_mm.FeatureDistiller',
                teacher=dict(type='BackboneTeacher', reader='clip', checkpoint='x.pt')),
            train_dataloader=dict(batch_size=128, dataset=dict(type='ImageNet', data_root=str(tmp_path / 'none')))))
    cost = cost_from_config(cfg)
    assert cost.images_per_epoch == 1_281_167
    assert cost.fraction == pytest.approx(300 * 1_281_167 / 12.8e9)
    assert cost_from_config(cfg, images_per_epoch=1.28e6).fraction == pytest.approx(0.03)
