"""Analyses of the paper's supplement: attention distance per head (Fig. 1), average attention maps
(Figs. 2-4), frozen-feature probes and training cost (appendix A). Pure functions of models, images and run
logs; the tools in ``tools/analysis/`` call them and write the tables, figures and files."""
from .attention_distance import attention_distance, layer_attention_distances, patch_distances
from .attention_maps import average_attention_map, layer_attention_maps
from .attention_model import collect_attention, input_statistics, resolve_attention_module
from .attention_statistics import AttentionStats, RunningMean, analyse_attention
from .training_cost import DistillationCost, MeasuredRun, measure_run, paper_cost

__all__ = [
    'AttentionStats', 'analyse_attention', 'attention_distance', 'layer_attention_distances', 'patch_distances',
    'average_attention_map', 'layer_attention_maps', 'collect_attention', 'input_statistics',
    'resolve_attention_module', 'RunningMean', 'DistillationCost', 'MeasuredRun', 'measure_run', 'paper_cost'
]
