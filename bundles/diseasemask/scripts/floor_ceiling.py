"""Floor and ceiling of the diseasemask bundle on the held-out phantoms (BUNDLES.md: measured before tuning).

* floor: chance AUC (0.5) and a "prior box" localizer that sees no image: for each box class, the
  mean training box of that class (no alignment);
* ceiling: the same classifier and schedule as stage 3, trained on images aligned with the
  phantoms' **ground-truth** transform (what the method must estimate), its CAMs mapped back with
  that transform; and the same with box supervision of the CAM (an extra pixel BCE between each
  box class's up-sampled CAM and its ground-truth box mask), i.e. what a box-supervised CAM reaches.

    python bundles/diseasemask/scripts/floor_ceiling.py [--epochs 6] [--out bundles/diseasemask/eval/floor_ceiling.json]

Reads the bundle's train.yaml + evaluate.yaml (same data, network, epochs, held-out seed); extra
``--override key=value`` items are applied to the config (e.g. ``--override epochs#aligned=10``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO))

from monai.bundle import ConfigParser  # noqa: E402

from monai_mammo.alignment import warp  # noqa: E402
from monai_mammo.atomic_io import atomic_write_json  # noqa: E402
from monai_mammo.engines.diseasemask import BOX_CLASS_INDICES, cams_in_input_frame, mean_auc  # noqa: E402
from monai_mammo.metrics.localization import LocalizationAccuracyMetric  # noqa: E402

logger = logging.getLogger("floor_ceiling")
CONFIGS = REPO / "bundles" / "diseasemask" / "configs"


def _stack(dataset) -> dict[str, torch.Tensor]:
    items = [dataset[i] for i in range(len(dataset))]
    return {k: torch.stack([torch.as_tensor(it[k]) for it in items]) for k in ("image", "label", "box_targets", "true_theta")}


def _box_masks(boxes: torch.Tensor, num_classes: int, size: tuple[int, int]) -> torch.Tensor:
    masks = torch.zeros(boxes.shape[0], num_classes, *size)
    for b, rows in enumerate(boxes):
        for row in rows[rows[:, 0] >= 0]:
            c, x0, y0, x1, y1 = (int(round(float(v))) for v in row)
            masks[b, c, max(y0, 0) : max(y1, y0 + 1), max(x0, 0) : max(x1, x0 + 1)] = 1.0
    return masks


def prior_boxes(train: dict[str, torch.Tensor], test: dict[str, torch.Tensor], num_classes: int) -> dict:
    metric = LocalizationAccuracyMetric(num_classes=num_classes)
    size = train["image"].shape[-2:]
    rows = train["box_targets"].reshape(-1, 5)
    rows = rows[rows[:, 0] >= 0]
    cams = torch.zeros(num_classes, *size)
    for c in range(num_classes):
        sel = rows[rows[:, 0] == c]
        if len(sel):
            x0, y0, x1, y1 = (int(round(float(v))) for v in sel[:, 1:].mean(0))
            cams[c, y0:y1, x0:x1] = 1.0
    for boxes in test["box_targets"]:
        metric(cams[None], [boxes[boxes[:, 0] >= 0]])
    return metric.aggregate_all()


def train_and_evaluate(parser: ConfigParser, train: dict, test: dict, epochs: int, box_weight: float, seed: int) -> dict:
    torch.manual_seed(seed)
    network = parser.get_parsed_content("network_def")
    network.align = False
    network.set_trainable("classifier")
    loss_fn = parser.get_parsed_content("loss")
    optimizer = torch.optim.Adam(network.classifier.parameters(), lr=float(parser.get_parsed_content("learning_rate")))
    # the stage's schedule: cosine decay to 0 over the epochs (train.yaml's classifier stages)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(int(epochs), 1))
    batch_size = int(parser.get_parsed_content("batch_size"))
    num_classes = int(parser.get_parsed_content("num_classes"))
    # the ground-truth alignment: T * I with the phantom's own transform
    images = warp(train["image"], train["true_theta"])
    size = tuple(images.shape[-2:])
    box_masks = warp(_box_masks(train["box_targets"], num_classes, size), train["true_theta"], mode="nearest") if box_weight > 0 else None
    n = len(images)
    for epoch in range(epochs):
        network.train()
        order = torch.randperm(n)
        total = 0.0
        for start in range(0, n, batch_size):
            index = order[start : start + batch_size]
            logits, cams = network.classifier.forward_cam(images[index])
            loss = loss_fn(logits, train["label"][index])
            if box_masks is not None:
                masks = box_masks[index]
                has = masks.flatten(2).amax(-1) > 0  # (B, K): classes with a box in the image
                if has.any():
                    up = F.interpolate(cams, size=size, mode="bilinear", align_corners=False)
                    pixel = F.binary_cross_entropy_with_logits(up, masks, reduction="none").mean(dim=(-2, -1))
                    loss = loss + box_weight * pixel[has].mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(index)
        scheduler.step()
        logger.info("epoch %d/%d: loss %.4f", epoch + 1, epochs, total / n)
    network.eval()
    metric = LocalizationAccuracyMetric(num_classes=num_classes)
    scores = []
    with torch.no_grad():
        for start in range(0, len(test["image"]), batch_size):
            sl = slice(start, start + batch_size)
            theta = test["true_theta"][sl]
            aligned = warp(test["image"][sl], theta)
            logits, cams = network.classifier.forward_cam(aligned)
            scores.append(torch.sigmoid(logits))
            back = cams_in_input_frame(cams, theta, test["image"].shape[-2:])
            metric(back, [b[b[:, 0] >= 0] for b in test["box_targets"][sl]])
    scores_np = torch.cat(scores).numpy()
    labels_np = test["label"].numpy()
    mean, per_class = mean_auc(scores_np, labels_np)
    loc = metric.aggregate_all()
    return {"mean_auc": mean, "auc": per_class, "loc": loc}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=None, help="default: the config's epochs#aligned")
    ap.add_argument("--box-weight", type=float, default=1.0)
    ap.add_argument("--out", default=None)
    ap.add_argument("--override", action="append", default=[], help="key=value (JSON value), e.g. epochs#aligned=10")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(1)
    parser = ConfigParser()
    parser.read_config([str(CONFIGS / "train.yaml"), str(CONFIGS / "evaluate.yaml")])
    for item in args.override:
        key, value = item.split("=", 1)
        try:
            parser[key] = json.loads(value)
        except json.JSONDecodeError:
            parser[key] = value
    epochs = args.epochs or int(parser.get_parsed_content("epochs#aligned"))
    num_classes = int(parser.get_parsed_content("num_classes"))
    class_names = parser.get_parsed_content("class_names")
    train = _stack(parser.get_parsed_content("train#dataset"))
    test = _stack(parser.get_parsed_content("eval#dataset"))
    seed = int(parser.get_parsed_content("seed"))
    result: dict = {"n_train": len(train["image"]), "n_test": len(test["image"]), "epochs": epochs}
    prior = prior_boxes(train, test, num_classes)
    result["floor"] = {"mean_auc": 0.5, "prior_box_loc": prior["mean"], "prior_box_loc_per_class": {class_names[c]: prior["per_class"][str(c)]["0.3"] for c in BOX_CLASS_INDICES}}
    logger.info("floor: chance AUC 0.5; prior-box localization %s", prior["mean"])
    for name, weight in (("ceiling_gt_aligned", 0.0), ("ceiling_gt_aligned_box_supervised", args.box_weight)):
        out = train_and_evaluate(parser, train, test, epochs, weight, seed)
        result[name] = {"mean_auc": out["mean_auc"], "loc": out["loc"]["mean"], "loc_per_class": {class_names[c]: out["loc"]["per_class"][str(c)]["0.3"] for c in BOX_CLASS_INDICES}}
        logger.info("%s: mean AUC %.4f, localization %s", name, out["mean_auc"], out["loc"]["mean"])
    out_file = Path(args.out or Path(parser.get_parsed_content("output_dir")) / "floor_ceiling.json")
    out_file.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_file, result, indent=1, default=float)
    logger.info("written to %s", out_file)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
