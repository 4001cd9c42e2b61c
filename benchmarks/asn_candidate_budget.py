#!/usr/bin/env python
"""How many ASN candidates the FPR stage must see: candidate recall against the candidate budget.

Zhang et al. (CVPR 2019, Sec. 3.2) threshold the ASN residual map and hand every connected
component to the FPR classifier; the paper gives no threshold. A trained t-test ASN saturates: µCs
and texture spots both reach a residual near the margin β, so the ASN score ranks them poorly and
the final recall is capped by the share of µCs that have a candidate at all (the *ceiling*).

For the bundle's trained ASN (``models/model.pt``) on the held-out phantoms of ``evaluate.yaml``
(the same preprocessing, network and candidate rules as the bundle), this prints, for each
``(quantile threshold, max candidates)`` pair: candidates per image, the ceiling (µCs within 1 mm
of any candidate) and the proposals R@k (ASN score alone).

Usage::

    nice python benchmarks/asn_candidate_budget.py                       # bundle defaults
    nice python benchmarks/asn_candidate_budget.py --budgets 0.998:100 0.99:300 --max-images 10
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "bundles" / "asn" / "configs"
DEFAULT_BUDGETS = ("0.998:100", "0.995:200", "0.99:300", "0.98:800")


def main(argv: list[str] | None = None) -> list[dict]:
    from monai.bundle import ConfigParser

    from monai_mammo.checkpoints import load_network_weights
    from monai_mammo.metrics.froc import PointFROCMetric, match_points
    from monai_mammo.regions import candidate_map, regions_from_map

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--budgets", nargs="+", default=list(DEFAULT_BUDGETS), help="QUANTILE:MAX pairs")
    p.add_argument("--checkpoint", default=None, help="ASN checkpoint (default: the bundle's models/model.pt)")
    p.add_argument("--max-images", type=int, default=0, help="first N held-out images only (0: all)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    parser = ConfigParser()
    parser.read_config([str(CONFIGS / "train.yaml"), str(CONFIGS / "evaluate.yaml")])
    network = parser.get_parsed_content("network")
    checkpoint = args.checkpoint or parser.get_parsed_content("ckpt_dir") + "/model.pt"
    load_network_weights(network, checkpoint, "cpu")
    network.eval()
    dataset = parser.get_parsed_content("validate#dataset")
    inferer = parser.get_parsed_content("validate#inferer")
    candidates = parser.get_parsed_content("candidates")
    radius = float(parser.get_parsed_content("validate#radius_mm"))
    n = len(dataset) if args.max_images <= 0 else min(args.max_images, len(dataset))

    maps, breasts, gts = [], [], []
    with torch.no_grad():
        for i in range(n):
            item = dataset[i]
            image = item["image"].as_tensor()[None].float()
            maps.append(candidate_map(inferer(image, network), image, candidates["map"])[0, 0].numpy())
            breasts.append(np.asarray(item["breast_mask"][0]) > 0)
            gts.append(np.asarray(item["points"], dtype=np.float64).reshape(-1, 2))
    spacing = [float(parser.get_parsed_content("target_spacing"))] * 2

    rows = []
    for budget in args.budgets:
        quantile, max_candidates = budget.split(":")
        preds, hit = [], []
        for score_map, breast, gt in zip(maps, breasts, gts):
            c = regions_from_map(
                score_map, mask=breast, threshold=float(quantile), threshold_mode="quantile",
                centre=candidates["centre"], min_area=candidates["min_area"],
                max_regions=int(max_candidates), score=candidates["score"], score_name="asn",
            )
            preds.append(np.c_[c.points, c.scores["asn"]])
            hit.append(match_points(c.points, gt, spacing, radius).any(axis=0) if len(c) else np.zeros(len(gt), bool))
        metric = PointFROCMetric(radius_mm=radius, fps_per_image="final")
        metric(preds, gts, spacing=[spacing] * n)
        row = {
            "quantile": float(quantile),
            "max_candidates": int(max_candidates),
            "candidates_per_image": float(np.mean([len(x) for x in preds])),
            "ceiling": float(np.concatenate(hit).mean()),
            "proposals": metric.compute_details()["recall_at"],
        }
        rows.append(row)
        print(f"quantile {row['quantile']:g}, max {row['max_candidates']}: {row['candidates_per_image']:.0f} candidates/image, "
              f"ceiling {row['ceiling']:.3f}; proposals " + ", ".join(f"{k} {v:.3f}" for k, v in row["proposals"].items()), flush=True)
    print(json.dumps({"images": n, "targets": int(sum(len(g) for g in gts)), "checkpoint": str(checkpoint)}))
    return rows


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
