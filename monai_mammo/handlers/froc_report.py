"""Ignite handler that prints and writes the FROC results of point-detection metrics."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from monai.utils import min_version, optional_import

Events, _ = optional_import("ignite.engine", "0.4.11", min_version, "Events")

__all__ = ["FROCReportHandler"]


class FROCReportHandler:
    """After each evaluation epoch, log R@k of one or more FROC metrics and optionally write a report.

    Zhang et al., CVPR 2019, Sec. 4.4: recall at k false positives per image for proposals and for
    the final (ASN × FPR) detections. Each entry of ``metrics`` is a
    ``monai.handlers.IgniteMetricHandler`` wrapping
    :class:`~monai_mammo.metrics.froc.PointFROCMetric` (attached to the same engine before this
    handler, as ``SupervisedEvaluator`` does for ``key_val_metric`` / ``additional_metrics``);
    its ``metric_fn.last_details`` is read at ``EPOCH_COMPLETED``. With ``output_dir``, writes
    ``metrics.json``, ``froc_<name>.csv`` and ``froc.png`` via
    :func:`~monai_mammo.metrics.froc.save_froc_report`. The details also go to
    ``engine.state.froc_details[name]``.

    Example (bundle config)::

        - _target_: monai_mammo.handlers.froc_report.FROCReportHandler
          metrics: {proposals: "@validate#evaluator#key_val_metric#val_proposals_recall"}

    Args:
        metrics: name -> IgniteMetricHandler (or anything with ``metric_fn.last_details``).
        output_dir: folder for the report files; None: log only. Default None.
        plot: also write ``froc.png`` (needs matplotlib). Default True.
        title: plot title. Default "FROC".
        log_name: logger name. Default None (this module's).
    """

    def __init__(
        self,
        metrics: Mapping[str, Any],
        output_dir: str | None = None,
        plot: bool = True,
        title: str = "FROC",
        log_name: str | None = None,
    ) -> None:
        if not metrics:
            raise ValueError("FROCReportHandler: metrics must name at least one FROC metric handler")
        self.metrics = dict(metrics)
        self.output_dir = output_dir
        self.plot = plot
        self.title = title
        self.logger = logging.getLogger(log_name or __name__)

    def attach(self, engine: Any) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, engine: Any) -> None:
        details: dict[str, dict] = {}
        for name, handler in self.metrics.items():
            metric = getattr(handler, "metric_fn", handler)
            d = getattr(metric, "last_details", None)
            if d is None:
                self.logger.warning(f"FROCReportHandler: metric {name!r} has no results yet")
                continue
            details[name] = d
            recalls = ", ".join(f"{k}={v:.3f}" for k, v in d["recall_at"].items())
            line = (
                f"FROC {name} (epoch {engine.state.epoch}): {recalls} "
                f"[{d['num_targets']} µCs, {d['num_images']} images, radius {d['radius_mm']:g} mm]"
            )
            self.logger.info(line)
        if not hasattr(engine.state, "froc_details"):
            engine.state.froc_details = {}
        engine.state.froc_details.update(details)
        if self.output_dir and details:
            from monai_mammo.metrics.froc import save_froc_report

            written = save_froc_report(Path(self.output_dir), details, plot=self.plot, title=self.title)
            self.logger.info("FROC report: %s", ", ".join(str(p) for p in written.values()))
