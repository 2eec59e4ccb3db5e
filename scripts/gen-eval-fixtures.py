#!/usr/bin/env python3
"""Writes the reference fixtures for Tests/CondenseEvaluationTests (scikit-learn + scipy as the oracle).

    pip install scikit-learn scipy
    python3 scripts/gen-eval-fixtures.py

Outputs (small, committed):
  vmeasure.json  label pairs -> sklearn homogeneity / completeness / v_measure_score
  kmeans.json    point sets -> sklearn MiniBatchKMeans inertia with MTEB's settings
                 (batch_size=500, n_init="auto", k-means++), seeds 0..9
  spearman.json  score pairs -> scipy.stats.spearmanr (average ranks for ties)
"""
import json
import os

import numpy as np
import scipy
import sklearn
from scipy.stats import spearmanr
from sklearn.cluster import MiniBatchKMeans
from sklearn.datasets import make_blobs
from sklearn.metrics import homogeneity_completeness_v_measure

OUT = os.path.join(os.path.dirname(__file__), "..", "Tests", "CondenseEvaluationTests", "Fixtures")
SEEDS = list(range(10))


def vmeasure_cases():
    rng = np.random.default_rng(7)
    cases = [
        ("perfect", [0, 0, 1, 1, 2, 2], [5, 5, 3, 3, 9, 9]),
        ("one_predicted_cluster", [0, 0, 1, 1, 2, 2], [1, 1, 1, 1, 1, 1]),
        ("one_true_class", [4, 4, 4, 4], [0, 1, 2, 3]),
        ("both_constant", [1, 1, 1], [2, 2, 2]),
        ("split_classes", [0, 0, 0, 1, 1, 1], [0, 0, 1, 2, 2, 3]),
        ("merged_classes", [0, 0, 1, 1, 2, 2], [0, 0, 0, 0, 1, 1]),
        ("sklearn_doc_example", [0, 0, 1, 1], [1, 1, 0, 0]),
        ("single_item", [3], [8]),
    ]
    for name, n, classes, clusters in [("random_small", 50, 4, 6), ("random_large", 3000, 77, 77),
                                        ("random_many_clusters", 500, 8, 150)]:
        truth = rng.integers(0, classes, n)
        # Partly informative predictions: a noisy copy of the truth.
        predicted = np.where(rng.random(n) < 0.6, truth % clusters, rng.integers(0, clusters, n))
        cases.append((name, truth.tolist(), predicted.tolist()))
    out = []
    for name, truth, predicted in cases:
        h, c, v = homogeneity_completeness_v_measure(truth, predicted)
        out.append({"name": name, "labels_true": truth, "labels_pred": predicted,
                    "homogeneity": float(h), "completeness": float(c), "v_measure": float(v)})
    return out


def kmeans_cases():
    specs = [
        # name, samples, features, clusters, cluster_std, box, generator seed
        ("separated_blobs", 1200, 8, 10, 1.0, (-8.0, 8.0), 1),
        ("overlapping_blobs", 900, 16, 25, 2.5, (-5.0, 5.0), 2),
        ("uneven_blobs", 700, 12, 15, 1.5, (-6.0, 6.0), 3),
    ]
    out = []
    for name, n, d, k, std, box, seed in specs:
        if name == "uneven_blobs":
            sizes = np.random.default_rng(seed).integers(5, 90, k)
            sizes = (sizes * n // sizes.sum()).tolist()
            points, labels = make_blobs(n_samples=sizes, n_features=d, cluster_std=std,
                                        center_box=box, random_state=seed)
        else:
            points, labels = make_blobs(n_samples=n, n_features=d, centers=k, cluster_std=std,
                                        center_box=box, random_state=seed)
        # Rounded, then float32: exactly what the Swift side reads back.
        points = np.round(points, 4).astype(np.float32)
        inertias = []
        for s in SEEDS:
            model = MiniBatchKMeans(n_clusters=k, batch_size=500, n_init="auto", random_state=s)
            model.fit(points)
            inertias.append(float(model.inertia_))
        out.append({"name": name, "clusters": k, "features": d, "labels": labels.tolist(),
                    "points": [round(float(v), 4) for v in points.reshape(-1)],
                    "sklearn_inertia": inertias, "sklearn_mean_inertia": float(np.mean(inertias))})
    return out


def spearman_cases():
    rng = np.random.default_rng(11)
    cases = [
        ("monotone", [1.0, 2.0, 3.0, 4.0, 5.0], [10.0, 20.0, 25.0, 80.0, 81.0]),
        ("reversed", [1.0, 2.0, 3.0, 4.0], [4.0, 3.0, 2.0, 1.0]),
        ("ties_both", [1.0, 2.0, 2.0, 3.0, 3.0, 3.0, 7.0], [0.5, 0.1, 0.1, 0.9, 0.3, 0.3, 0.2]),
    ]
    gold = np.round(rng.uniform(0, 5, 300) * 5) / 5  # STS-like gold with many ties
    predicted = gold / 5 + rng.normal(0, 0.3, 300)
    cases.append(("sts_like", gold.tolist(), predicted.tolist()))
    out = []
    for name, x, y in cases:
        rho = spearmanr(x, y).statistic
        out.append({"name": name, "x": x, "y": y, "rho": float(rho)})
    return out


def main():
    os.makedirs(OUT, exist_ok=True)
    meta = {"sklearn": sklearn.__version__, "scipy": scipy.__version__}
    for file, cases in [("vmeasure.json", vmeasure_cases()), ("kmeans.json", kmeans_cases()),
                        ("spearman.json", spearman_cases())]:
        with open(os.path.join(OUT, file), "w") as f:
            json.dump({"generator": meta, "cases": cases}, f, separators=(",", ":"))
            f.write("\n")
        print(file, len(cases), "cases")


if __name__ == "__main__":
    main()
