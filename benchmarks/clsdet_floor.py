"""Floor references for the clsdet bundle on its held-out phantoms (BUNDLES.md "floor and ceiling").

Two references, scored with exactly the bundle's evaluation (:func:`monai_mammo.engines.clsdet.compute_metrics`:
AUROC, pAUCR, spec@sens, localization FROC at the 0.85-sensitivity operating point):

* ``chance``: uniform random image and region scores;
* ``brightness``: a hand-made mass detector. A mass is denser than the fat around it, so each
  region's score is the mean of its central half minus the mean of its border ring (local contrast
  of the [0, 1]-scaled image), mapped to (0, 1) by a logistic; the image score is the maximum over
  the regions, the same for M and B (it cannot tell them apart: M vs BN measures only how often
  malignant images hold the most conspicuous mass).

    python benchmarks/clsdet_floor.py [--seed 1] [--output_dir bundles/clsdet/eval/floor]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def brightness_scores(regions: torch.Tensor) -> np.ndarray:
    """Centre-minus-ring contrast of each ``(R, 1, w, w)`` crop, in (0, 1)."""
    w = regions.shape[-1]
    q = w // 4
    centre = regions[..., q : w - q, q : w - q].mean(dim=(-1, -2, -3))
    ring = (regions.sum(dim=(-1, -2, -3)) - regions[..., q : w - q, q : w - q].sum(dim=(-1, -2, -3))) / (w * w - (w - 2 * q) ** 2)
    return torch.sigmoid((centre - ring) * 20.0).numpy().astype(np.float64)


def main() -> None:
    from monai.bundle import ConfigParser

    from monai_mammo.engines.clsdet import collate_regions, compute_metrics, write_report
    from monai_mammo.transforms.geometry import boxes_to_original

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=1, help="eval_phantom#seed (default 1)")
    ap.add_argument("--output_dir", default=str(REPO / "bundles/clsdet/eval/floor"))
    ap.add_argument("--n_bootstrap", type=int, default=1000)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO)
    torch.set_num_threads(1)
    parser = ConfigParser()
    parser.read_config([str(REPO / "bundles/clsdet/configs/train.yaml"), str(REPO / "bundles/clsdet/configs/evaluate.yaml")])
    parser.update({"bundle_root": str(REPO / "bundles/clsdet"), "eval_phantom#seed": args.seed})
    dataset = parser.get_parsed_content("eval#dataset")
    rng = np.random.default_rng(0)
    references: dict[str, list] = {"chance": [], "brightness": []}
    for index in range(len(dataset)):
        item = dataset[index]
        batch = collate_regions([item])
        meta = dict(item["image"].meta)
        boxes = np.asarray(boxes_to_original(item["region_boxes"].numpy(), meta), dtype=np.float64)
        raw_boxes = item.get("boxes")
        raw_boxes = np.zeros((0, 4)) if raw_boxes is None else np.asarray(raw_boxes, dtype=np.float64).reshape(-1, 4)
        lesions = np.asarray(boxes_to_original(raw_boxes, meta), dtype=np.float64)
        common = {
            "label": np.asarray(item["label"]).astype(int).reshape(-1),
            "boxes": boxes,
            "lesions": lesions.reshape(-1, 4),
            "lesion_labels": np.asarray([] if item.get("box_labels") is None else item["box_labels"], dtype=int).reshape(-1),
        }
        random_scores = rng.uniform(size=(len(boxes), 2))
        references["chance"].append({**common, "prob": rng.uniform(size=2), "scores": random_scores})
        bright = brightness_scores(batch["regions"][0])
        references["brightness"].append({**common, "prob": np.array([bright.max(), bright.max()]), "scores": np.stack([bright, bright], 1)})
    summary = {}
    for name, records in references.items():
        result = compute_metrics(records, n_bootstrap=args.n_bootstrap, seed=0)
        write_report(Path(args.output_dir) / name, result, f"floor reference {name}, eval_phantom seed {args.seed}")
        summary[name] = {k: v for k, v in result["metrics"].items() if not k.endswith("_ci") and k != "froc_curves"}
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
