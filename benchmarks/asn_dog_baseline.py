#!/usr/bin/env python
"""A classical reference for the ASN benchmark: difference-of-Gaussians spot detection.

Not a method of the paper: it tells how hard the phantom benchmark is. On the ASN bundle's
held-out phantoms (``evaluate.yaml``: the same preprocessing, µC points and FROC metric), each
image is filtered with a DoG (σ1, σ2 in pixels), normalised by the local RMS of the DoG response
(so textured tissue does not dominate), and the local maxima inside the eroded breast are scored
by that z-value. Prints R@k (k = 1, 5, 10, 15, 20) overall and per CNR band of the phantom µCs.

Usage::

    nice python benchmarks/asn_dog_baseline.py                        # bundle's held-out phantoms
    nice python benchmarks/asn_dog_baseline.py --override "phantom#calc_cnr=[3.0, 12.0]"
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "bundles" / "asn" / "configs"


def dog_detections(image: np.ndarray, breast: np.ndarray, sigmas: tuple[float, float] = (1.0, 3.0),
                   rms_sigma: float = 15.0, min_z: float = 1.5, max_points: int = 200) -> np.ndarray:
    """(N, 3) rows ``[x, y, z]`` of DoG local maxima inside ``breast``, best first."""
    img = image.astype(np.float32)
    dog = ndimage.gaussian_filter(img, sigmas[0]) - ndimage.gaussian_filter(img, sigmas[1])
    z = dog / (np.sqrt(ndimage.gaussian_filter(dog * dog, rms_sigma)) + 1e-3)
    z[~ndimage.binary_erosion(breast, iterations=10)] = 0.0  # skin line: not µCs
    ys, xs = np.nonzero((z == ndimage.maximum_filter(z, 7)) & (z > min_z))
    order = np.argsort(-z[ys, xs])[:max_points]
    return np.stack([xs[order], ys[order], z[ys[order], xs[order]]], axis=1).astype(np.float64)


def main(argv: list[str] | None = None) -> dict:
    from monai.bundle import ConfigParser

    from monai_mammo.metrics.froc import PointFROCMetric

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--override", action="append", default=[], help="config override KEY=JSON (repeatable)")
    p.add_argument("--sigmas", type=float, nargs=2, default=[1.0, 3.0], help="DoG sigmas in pixels (default 1 3)")
    p.add_argument("--max-images", type=int, default=0, help="evaluate the first N images only (0: all)")
    args = p.parse_args(argv)

    parser = ConfigParser()
    parser.read_config([str(CONFIGS / "train.yaml"), str(CONFIGS / "evaluate.yaml")])
    for item in args.override:
        key, value = item.split("=", 1)
        parser[key] = json.loads(value)
    dataset = parser.get_parsed_content("validate#dataset")
    items = json.loads(Path(parser.get_parsed_content("eval_datalist_file")).read_text())["test"]
    radius = float(parser.get_parsed_content("validate#radius_mm"))
    n = len(dataset) if args.max_images <= 0 else min(args.max_images, len(dataset))

    preds, gts, cnr = [], [], []
    for i in range(n):
        d = dataset[i]
        preds.append(dog_detections(np.asarray(d["image"][0]), np.asarray(d["breast_mask"][0]) > 0, tuple(args.sigmas)))
        gts.append(np.asarray(d["points"], dtype=np.float64).reshape(-1, 2))
        cnr.extend(items[i].get("point_cnr") or [np.nan] * len(gts[-1]))
    spacing = [[float(parser.get_parsed_content("target_spacing"))] * 2] * n

    metric = PointFROCMetric(radius_mm=radius, fps_per_image="final")
    metric(preds, gts, spacing=spacing)
    details = metric.compute_details()
    result = {"images": n, "targets": int(details["num_targets"]), "recall_at": details["recall_at"], "by_cnr": {}}
    print(f"DoG ({args.sigmas[0]:g}, {args.sigmas[1]:g}) on {n} held-out images, {result['targets']} µCs: "
          + ", ".join(f"{k} {v:.3f}" for k, v in details["recall_at"].items()))

    # per CNR band: recall at the 5-FP/image threshold of the whole set
    from monai_mammo.metrics.froc import match_points

    cnr_arr = np.asarray(cnr, dtype=np.float64)
    fp_scores, best = [], []
    for pr, gt in zip(preds, gts):
        hits = match_points(pr[:, :2], gt, spacing[0], radius) if len(pr) and len(gt) else np.zeros((len(pr), len(gt)), bool)
        fp_scores.extend(pr[~hits.any(axis=1), 2] if len(pr) else [])
        best.extend(pr[hits[:, j], 2].max() if hits[:, j].any() else -np.inf for j in range(len(gt)))
    fp_sorted = np.sort(np.asarray(fp_scores))[::-1]
    thr = fp_sorted[5 * n] if len(fp_sorted) > 5 * n else -np.inf
    best_arr = np.asarray(best)
    edges = [0, 4, 6, 9, 13, np.inf]
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (cnr_arr >= lo) & (cnr_arr < hi)
        if sel.any():
            r = float((best_arr[sel] > thr).mean())
            result["by_cnr"][f"{lo:g}-{hi:g}"] = {"n": int(sel.sum()), "R@5": r}
            print(f"  CNR {lo:g}-{hi:g}: {int(sel.sum())} µCs, R@5 {r:.2f}")
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
