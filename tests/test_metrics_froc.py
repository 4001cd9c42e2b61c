"""Tests for monai_mammo.metrics.froc: point FROC with a hit radius in mm."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from monai.metrics.froc import compute_froc_curve_data

from monai_mammo import registry
from monai_mammo.metrics.froc import (
    PointFROCMetric,
    from_engine_points,
    froc_curve,
    match_points,
    recall_at_fps,
    save_froc_report,
)

# Hand-worked example, 2 images, 5 µCs.
# Image A, spacing 0.1 x 0.1 mm (1 mm = 10 px). µCs g1 (10,10), g2 (50,50), g3 (100,100), g4 (60,50).
#   p1 (12,10) .9  -> g1 (0.2 mm)                     TP
#   p2 (55,50) .8  -> g2 and g4 (0.5 mm each)         TP, recalls both
#   p3 (200,200) .7                                   FP
#   p4 (11,11) .3  -> g1 again                        TP (a duplicate is not an FP)
#   p5 (100,111) .6: 1.1 mm from g3                   FP
#   p6 (101,100) .2 -> g3 (0.1 mm)                    TP
# Image B, spacing 0.05 (x) x 0.2 (y) mm: 1 mm = 20 px along x, 5 px along y. µC h1 (30,30).
#   q1 (45,30) .85: dx 15 px = 0.75 mm                TP
#   q2 (30,37) .5:  dy 7 px = 1.4 mm                  FP (it would hit at 0.1 mm spacing)
#   q3 (300,300) .95                                  FP
PRED_A = np.array([[12, 10, 0.9], [55, 50, 0.8], [200, 200, 0.7], [11, 11, 0.3], [100, 111, 0.6], [101, 100, 0.2]])
GT_A = np.array([[10, 10], [50, 50], [100, 100], [60, 50]])
PRED_B = np.array([[45, 30, 0.85], [30, 37, 0.5], [300, 300, 0.95]])
GT_B = np.array([[30, 30]])
SPACING = [[0.1, 0.1], [0.05, 0.2]]

# threshold: (FP / image, sensitivity); FPs by score: .95 (q3), .7 (p3), .6 (p5), .5 (q2)
# µC recalled from: g1 .9, h1 .85, g2 and g4 .8, g3 .2 (thresholds = FP scores and these)
EXPECTED_CURVE = [
    (np.inf, 0.0, 0.0),
    (0.95, 0.5, 0.0),
    (0.9, 0.5, 0.2),
    (0.85, 0.5, 0.4),
    (0.8, 0.5, 0.8),
    (0.7, 1.0, 0.8),
    (0.6, 1.5, 0.8),
    (0.5, 2.0, 0.8),
    # no point at .3: p4 recalls nothing new and is no FP, so it changes no operating point
    (0.2, 2.0, 1.0),
]


def _metric(**kwargs) -> PointFROCMetric:
    metric = PointFROCMetric(**kwargs)
    metric([PRED_A, PRED_B], [GT_A, GT_B], spacing=SPACING)
    return metric


def test_hand_worked_curve_and_recalls() -> None:
    details = _metric().compute_details()
    curve = details["curve"]
    assert curve["thresholds"] == pytest.approx([t for t, _, _ in EXPECTED_CURVE])
    assert curve["fps_per_image"] == pytest.approx([f for _, f, _ in EXPECTED_CURVE])
    assert curve["sensitivity"] == pytest.approx([s for _, _, s in EXPECTED_CURVE])
    assert details["recall_at"] == pytest.approx({"R@1": 0.8, "R@5": 1.0, "R@10": 1.0, "R@15": 1.0, "R@20": 1.0})
    assert details["num_images"] == 2 and details["num_targets"] == 5 and details["num_predictions"] == 9
    assert details["key_metric"] == pytest.approx(1.0)


def test_step_rule_between_operating_points() -> None:
    details = _metric(fps_per_image=[0.25, 0.5, 1.0, 1.9, 2.0]).compute_details()
    # step: best sensitivity among points with FP/image <= k
    assert details["recall_at"] == pytest.approx({"R@0.25": 0.0, "R@0.5": 0.8, "R@1": 0.8, "R@1.9": 0.8, "R@2": 1.0})
    proposals = _metric(fps_per_image="proposals", key_fps_per_image=[1, 2]).compute_details()
    assert list(proposals["recall_at"]) == ["R@5", "R@10", "R@15", "R@20", "R@30"]
    assert proposals["key_metric"] == pytest.approx((0.8 + 1.0) / 2)


def test_linear_interpolation_is_monais() -> None:
    fps = np.array([0.0, 1.0, 2.0])
    sens = np.array([0.0, 0.4, 0.8])
    assert recall_at_fps(fps, sens, [0.5, 1.5, 5], "linear") == pytest.approx({"R@0.5": 0.2, "R@1.5": 0.6, "R@5": 0.8})
    assert recall_at_fps(fps, sens, [0.5, 1.5, 5], "step") == pytest.approx({"R@0.5": 0.0, "R@1.5": 0.4, "R@5": 0.8})


def test_mm_radius_under_two_spacings() -> None:
    gt = np.array([[50.0, 50.0]])
    pred = np.array([[58.0, 50.0], [50.0, 58.0]])  # 8 px right, 8 px down
    # isotropic 0.1 mm: 0.8 mm both -> both hit; isotropic 0.15 mm: 1.2 mm -> neither
    assert match_points(pred[:, :2], gt, [0.1, 0.1]).ravel().tolist() == [True, True]
    assert match_points(pred[:, :2], gt, [0.15, 0.15]).ravel().tolist() == [False, False]
    # anisotropic 0.1 (x) x 0.2 (y): the x offset is 0.8 mm (hit), the y offset 1.6 mm (miss)
    assert match_points(pred[:, :2], gt, [0.1, 0.2]).ravel().tolist() == [True, False]
    # exactly on the 1 mm circle counts
    assert match_points(np.array([[60.0, 50.0]]), gt, [0.1, 0.1]).item()
    # through the metric: the same prediction recalls the µC only under the finer spacing
    for spacing, recall in (([0.1, 0.1], 1.0), ([0.15, 0.15], 0.0)):
        metric = PointFROCMetric()
        metric([np.array([[58.0, 50.0, 0.7]])], [gt], spacing=spacing)
        assert metric.compute_details()["recall_at"]["R@1"] == recall
    # a larger radius turns the 1.2 mm miss into a hit
    metric = PointFROCMetric(radius_mm=1.5)
    metric([np.array([[58.0, 50.0, 0.7]])], [gt], spacing=[0.15, 0.15])
    assert metric.aggregate().item() == 1.0


def test_input_forms_and_accumulation() -> None:
    # image A as inference-JSON dicts with "asn_score"; image B as a datalist-style dict; two calls
    points_a = [{"x": x, "y": y, "asn_score": s, "score": 0.0} for x, y, s in PRED_A]
    metric = PointFROCMetric(score_key="asn_score")
    stats = metric([{"points": points_a, "spacing": SPACING[0]}], [GT_A.tolist()])
    assert stats.tolist() == [[6, 2, 4, 4]]
    metric([torch.tensor(PRED_B)], [{"points": GT_B.tolist(), "spacing": SPACING[1]}])
    assert metric.compute_details()["curve"]["sensitivity"] == pytest.approx([s for _, _, s in EXPECTED_CURVE])
    metric.reset()
    with pytest.raises(ValueError, match="no image was evaluated"):
        metric.aggregate()


def test_batch_first_tensor_with_nan_padding() -> None:
    pred = torch.full((2, 6, 3), float("nan"), dtype=torch.float64)
    pred[0] = torch.tensor(PRED_A)
    pred[1, :3] = torch.tensor(PRED_B)
    gt = torch.full((2, 4, 2), float("nan"), dtype=torch.float64)
    gt[0] = torch.tensor(GT_A)
    gt[1, :1] = torch.tensor(GT_B)
    metric = PointFROCMetric()
    metric(pred, gt, spacing=SPACING)
    assert metric.compute_details()["recall_at"]["R@1"] == pytest.approx(0.8)


def test_edge_cases_and_errors() -> None:
    metric = PointFROCMetric(default_spacing=[0.1, 0.1])
    metric([np.zeros((0, 3))], [np.array([[5.0, 5.0]])])  # no prediction at all
    metric([np.array([[90.0, 90.0, 0.4]])], [np.zeros((0, 2))])  # an image without µC
    details = metric.compute_details()
    assert details["recall_at"]["R@1"] == 0.0 and details["curve"]["fps_per_image"] == pytest.approx([0.0, 0.5])
    with pytest.raises(ValueError, match="no pixel spacing"):
        PointFROCMetric()([PRED_A], [GT_A])
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        PointFROCMetric()([PRED_A[:, :2]], [GT_A], spacing=[0.1, 0.1])
    with pytest.raises(ValueError, match="same length"):
        PointFROCMetric()([PRED_A], [GT_A, GT_B], spacing=[0.1, 0.1])
    with pytest.raises(ValueError, match="'final', 'proposals'"):
        PointFROCMetric(fps_per_image="all")


def test_curve_agrees_with_monai() -> None:
    rng = np.random.default_rng(0)
    fp = rng.random(200).round(2)
    gt_best = np.where(rng.random(60) < 0.7, rng.random(60).round(2), -np.inf)
    ours = froc_curve(fp, gt_best, num_images=7)
    # MONAI skips its lowest threshold (the "undetected" marker): give it a sentinel below every score
    sentinel = -1.0
    monai_fps, monai_sens = compute_froc_curve_data(
        np.append(fp, sentinel), np.where(np.isfinite(gt_best), gt_best, sentinel), num_targets=60, num_images=7
    )
    assert ours["fps_per_image"] == pytest.approx(monai_fps[::-1])
    assert ours["sensitivity"] == pytest.approx(monai_sens[::-1])


def test_registry_and_ignite_handler() -> None:
    from ignite.engine import Engine
    from monai.handlers import IgniteMetricHandler

    metric = registry.build_metric("froc", radius_mm=1.0)
    assert isinstance(metric, PointFROCMetric)
    batches = [
        [{"pred_points": PRED_A, "points": GT_A, "spacing": SPACING[0]}],
        [{"pred_points": PRED_B, "points": GT_B, "spacing": SPACING[1]}],
    ]
    engine = Engine(lambda engine, batch: batch)
    handler = IgniteMetricHandler(metric_fn=metric, output_transform=from_engine_points(), save_details=True)
    handler.attach(engine, "froc_r5")
    engine.run(batches, max_epochs=1)
    assert engine.state.metrics["froc_r5"] == pytest.approx(1.0)
    assert handler.metric_fn.last_details["recall_at"]["R@1"] == pytest.approx(0.8)
    # a dict-of-lists output works too
    metric.reset()
    preds, gts = from_engine_points()({"pred_points": [PRED_A], "points": [GT_A], "spacing": [SPACING[0]]})
    metric(preds, gts)
    assert metric.compute_details()["num_targets"] == 4


def test_save_report(tmp_path) -> None:
    final = _metric().compute_details()
    proposals = _metric(fps_per_image="proposals").compute_details()
    written = save_froc_report(tmp_path, {"proposals": proposals, "final": final})
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["final"]["recall_at"]["R@1"] == pytest.approx(0.8)
    assert "R@30" in metrics["proposals"]["recall_at"] and "curve" not in metrics["final"]
    with open(tmp_path / "froc_final.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(EXPECTED_CURVE) and rows[0]["threshold"] == "inf"
    assert float(rows[4]["sensitivity"]) == pytest.approx(0.8)
    assert written["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temp files


def test_froc_report_handler_logs_each_metric_and_writes_the_report(tmp_path, caplog) -> None:
    from types import SimpleNamespace

    from ignite.engine import Engine

    from monai_mammo.handlers.froc_report import FROCReportHandler

    final = _metric()
    final.compute_details()  # sets last_details, as IgniteMetricHandler's compute does
    engine = Engine(lambda engine, batch: None)
    handler = FROCReportHandler({"final": SimpleNamespace(metric_fn=final), "none": SimpleNamespace(metric_fn=None)},
                                output_dir=str(tmp_path), plot=False)
    handler.attach(engine)
    with caplog.at_level("INFO", logger="monai_mammo.handlers.froc_report"):
        engine.run([0], max_epochs=1)
    assert "FROC final (epoch 1): R@1=0.800" in caplog.text and "metric 'none' has no results yet" in caplog.text
    assert set(engine.state.froc_details) == {"final"}
    assert json.loads((tmp_path / "metrics.json").read_text())["final"]["recall_at"]["R@1"] == pytest.approx(0.8)
    with pytest.raises(ValueError, match="at least one"):
        FROCReportHandler({})


def test_gather_across_ranks_or_not(monkeypatch) -> None:
    """Under torch.distributed the buffers are gathered (every rank's shard), unless gather=False."""
    import monai_mammo.metrics.froc as froc

    monkeypatch.setattr(froc, "evenly_divisible_all_gather", lambda t, concat=True: torch.cat([t, t]))  # two ranks, same images
    gathered, local = _metric(), _metric(gather=False)
    assert gathered.compute_details()["num_images"] == 2 * local.compute_details()["num_images"]
    assert gathered.compute_details()["recall_at"] == local.compute_details()["recall_at"]
