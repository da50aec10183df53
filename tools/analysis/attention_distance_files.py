"""Writing attention-distance tables (CSV with one row per head, JSON with per-model arrays)."""
import csv
import json
from typing import Dict

import numpy as np


def write_distance_csv(distances: Dict[str, np.ndarray], path: str) -> str:
    """Rows ``model, layer, head, distance_px``; returns ``path``."""
    with open(path, 'w', newline='') as f:
        writer = csv.writer(f)
        writer.writerow(['model', 'layer', 'head', 'distance_px'])
        for label, dist in distances.items():
            for layer, heads in enumerate(np.asarray(dist)):
                for head, value in enumerate(heads):
                    writer.writerow([label, layer, head, f'{float(value):.4f}'])
    return path


def distance_summary(dist: np.ndarray) -> Dict[str, list]:
    """Per-layer mean, min, max and std over heads of a (layers, heads) array."""
    dist = np.asarray(dist, dtype=np.float64)
    return dict(
        mean=dist.mean(1).tolist(), min=dist.min(1).tolist(), max=dist.max(1).tolist(), std=dist.std(1).tolist())


def write_distance_json(distances: Dict[str, np.ndarray], meta: Dict[str, dict], path: str) -> str:
    """``{model: {distances: [[...]], summary: {...}, **meta[model]}}``; returns ``path``."""
    out = {
        label: dict(distances=np.asarray(dist).tolist(), summary=distance_summary(dist), **meta.get(label, {}))
        for label, dist in distances.items()
    }
    with open(path, 'w') as f:
        json.dump(out, f, indent=1)
    return path
