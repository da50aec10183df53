"""Analyses of the paper's supplement: attention distance per head (Fig. 1), average attention maps
(Figs. 2-4), training cost (appendix A) and results tables (Tables 1-3). Pure functions; tools call them."""
from .attention_distance import attention_distance, layer_attention_distances, patch_distances
from .attention_maps import average_attention_map, layer_attention_maps
from .attention_model import collect_attention, input_statistics, resolve_attention_module
from .attention_statistics import AttentionStats, RunningMean, analyse_attention
from .results_table import COLUMNS, LAYOUTS, collect_row, format_table, read_metrics
from .training_cost import DistillationCost, MeasuredRun, format_cost, measure_run, paper_cost

__all__ = [
    'AttentionStats', 'analyse_attention', 'attention_distance', 'layer_attention_distances', 'patch_distances',
    'average_attention_map', 'layer_attention_maps', 'collect_attention', 'input_statistics',
    'resolve_attention_module', 'COLUMNS', 'LAYOUTS', 'collect_row', 'format_table', 'read_metrics', 'RunningMean',
    'DistillationCost', 'MeasuredRun', 'format_cost', 'measure_run', 'paper_cost'
]
