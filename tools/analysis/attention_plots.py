"""Figures in the supplement's style: attention distance per head (Fig. 1), attention-map grids (Figs. 2-4)."""
import math
from typing import Dict, Optional

import numpy as np


def _pyplot():
    import matplotlib
    matplotlib.use('Agg', force=False)
    import matplotlib.pyplot as plt
    return plt


def plot_attention_distances(distances: Dict[str, np.ndarray],
                             path: str,
                             title: Optional[str] = None,
                             dpi: int = 150) -> str:
    """One panel per model, side by side: layer on the x axis, one dot per head, shared y axis.

    Args:
        distances: Model label -> (layers, heads) mean attention distance in pixels.
        path: Output image path (PNG).
        title: Figure title.
        dpi: Resolution.

    Returns:
        ``path``.
    """
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(distances), figsize=(4.2 * len(distances), 3.6), sharey=True, squeeze=False)
    top = max(float(np.max(d)) for d in distances.values())
    for ax, (label, dist) in zip(axes[0], distances.items()):
        layers, heads = dist.shape
        for layer in range(layers):
            ax.scatter(np.full(heads, layer), dist[layer], s=14, alpha=0.8, color=plt.cm.viridis(layer / layers))
        ax.set_title(label)
        ax.set_xlabel('Network depth (layer)')
        ax.set_xticks(range(0, layers, max(1, layers // 12)))
        ax.set_ylim(0, top * 1.08 + 1e-6)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel('Mean attention distance (pixels)')
    return _save(plt, fig, path, title, dpi)


def plot_attention_maps(maps: np.ndarray,
                        path: str,
                        title: Optional[str] = None,
                        ncols: int = 4,
                        dpi: int = 150) -> str:
    """A grid of every layer's average attention map (queries = rows, keys = columns), layer 0 top-left.

    Each map gets its own colour scale (as in the supplement's figures, where the pattern matters).

    Args:
        maps: (layers, N, N) average attention maps.
        path: Output image path (PNG).
        title: Figure title.
        ncols: Maps per row.
        dpi: Resolution.

    Returns:
        ``path``.
    """
    plt = _pyplot()
    layers = maps.shape[0]
    ncols = min(ncols, layers)
    nrows = math.ceil(layers / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.6 * ncols, 2.6 * nrows + (0.4 if title else 0)), squeeze=False)
    for index, ax in enumerate(axes.flat):
        ax.axis('off')
        if index < layers:
            ax.imshow(maps[index], cmap='viridis', interpolation='nearest')
            ax.set_title(f'Layer {index}', fontsize=9)
    return _save(plt, fig, path, title, dpi)


def _save(plt, fig, path: str, title: Optional[str], dpi: int) -> str:
    """Titles, lays out, writes and closes ``fig``; returns ``path``."""
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
