"""A DICOM Structured Report of one image's findings: a TID 1500 measurement report (highdicom ``hd.sr``).

Each finding becomes one *planar ROI measurement group* (TID 1410) of the report:

* the region, an SCOORD (2D, image-relative; mammograms carry no frame of reference, so never
  SCOORD3D) that references the source image by its SOP Class and Instance UIDs: ``POINT`` for a
  point finding (an ASN µC), a closed ``POLYLINE`` rectangle for a box (a DAB-Net mass ROI), in
  DICOM image coordinates (:mod:`monai_mammo.dicom.findings`: pixel centre = index + 0.5, box edges unchanged);
* the finding type, a coded concept (:data:`FINDING_TYPES`, else a private code with the label);
* every score of the finding as a numeric measurement without units (:data:`SCORE_CONCEPTS`);
* the algorithm identification (bundle name, version, parameters such as an assumed spacing).

A last group (TID 1501, no region) carries the CAD processing summary: "All algorithms succeeded;
with findings" or "...; without findings", so an image without findings still gets its report.

The report is an Enhanced SR by default (the least demanding SR IOD that holds SCOORD, NUM and
CODE items); ``sr_class="comprehensive"`` or ``"comprehensive3d"`` picks the others.
:func:`read_structured_report` turns a written report back into plain findings (tests, users).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from monai_mammo.dicom.common import (
    OUTPUT_SERIES_NUMBERS,
    Algorithm,
    derived_uid,
    output_uids,
    prepare_source,
    require_highdicom,
    save_dataset,
)
from monai_mammo.dicom.findings import best_findings, findings_from_record, from_image_coordinates, to_image_coordinates

__all__ = [
    "PRIVATE_SCHEME",
    "FINDING_TYPES",
    "SCORE_CONCEPTS",
    "build_structured_report",
    "write_structured_report",
    "read_structured_report",
]

#: Coding scheme of the concepts no standard terminology has (a private scheme starts with "99").
PRIVATE_SCHEME = "99MMAMMO"

#: finding label -> (code value, scheme, meaning); SNOMED CT concepts of DICOM CID 6010 / 6016.
FINDING_TYPES: dict[str, tuple[str, str, str]] = {
    "microcalcification": ("129770007", "SCT", "Individual Calcification"),
    "calcification": ("129770007", "SCT", "Individual Calcification"),
    "calcification cluster": ("129769006", "SCT", "Calcification Cluster"),
    "mass": ("4147007", "SCT", "Mass"),
}

#: score field -> (code value, scheme, meaning) of its measurement.
SCORE_CONCEPTS: dict[str, tuple[str, str, str]] = {
    "probability": ("111047", "DCM", "Probability of cancer"),
    "score": ("SCORE", PRIVATE_SCHEME, "Detection score"),
    "asn_score": ("ASN_SCORE", PRIVATE_SCHEME, "ASN score (summed residual)"),
    "fpr_score": ("FPR_SCORE", PRIVATE_SCHEME, "False positive reduction probability"),
}

_SR_CLASSES = ("enhanced", "comprehensive", "comprehensive3d")


def _private(text: str) -> tuple[str, str, str]:
    value = "".join(c if c.isalnum() else "_" for c in text.upper())[:16] or "UNNAMED"
    return value, PRIVATE_SCHEME, text[:64]


def _code(hd: Any, triple: tuple[str, str, str]) -> Any:
    return hd.sr.CodedConcept(value=triple[0], scheme_designator=triple[1], meaning=triple[2])


def _finding_type(label: str | None) -> tuple[str, str, str]:
    if label is None:
        return ("121071", "DCM", "Finding")
    return FINDING_TYPES.get(label.lower(), _private(label))


def _score_concept(name: str, concepts: Mapping[str, tuple[str, str, str]]) -> tuple[str, str, str]:
    return concepts.get(name) or _private(name)


def _procedure(source: Any) -> tuple[str, str, str]:
    if str(source.get("Modality", "")).upper() == "MG":
        return ("71651007", "SCT", "Mammography")
    return ("363679005", "SCT", "Imaging procedure")


def build_structured_report(
    source: Any,
    record: Mapping[str, Any],
    algorithm: Algorithm,
    *,
    default_label: str | None = None,
    sr_class: str = "enhanced",
    score_concepts: Mapping[str, tuple[str, str, str]] | None = None,
    series_description: str | None = None,
    max_findings: int | None = None,
) -> Any:
    """The SR dataset (a highdicom SR object) of ``record``'s findings on ``source``.

    Args:
        source: the source image header (``pydicom.Dataset``; pixel data not needed).
        record: a findings record (``points`` and/or ``boxes`` in stored pixels).
        algorithm: bundle name, version, weights fingerprint and parameters.
        default_label: finding type of entries without a ``label`` (e.g. "microcalcification").
        sr_class: "enhanced" (default), "comprehensive" or "comprehensive3d".
        score_concepts: extra or replacing score field -> (value, scheme, meaning) codes.
        series_description: SeriesDescription. Default "<algorithm> findings".
        max_findings: only the best ``max_findings`` findings (by score); None: all (default).
            Each group's tracking identifier ("point 7", "box 2") names its entry in the record.
            highdicom builds a report in time growing with its content (about 25 ms per finding
            on the development machine), so this bounds the cost for 300-candidate ASN records.
    """
    hd = require_highdicom()
    from pydicom.sr.codedict import codes

    if sr_class not in _SR_CLASSES:
        raise ValueError(f"sr_class must be one of {_SR_CLASSES}, got {sr_class!r}")
    source = prepare_source(source)
    concepts = {**SCORE_CONCEPTS, **dict(score_concepts or {})}
    series_uid, sop_uid = output_uids(source, algorithm, "sr")
    unitless = hd.sr.CodedConcept(value="1", scheme_designator="UCUM", meaning="no units")
    algorithm_id = hd.sr.AlgorithmIdentification(
        name=algorithm.display_name,
        version=algorithm.version,
        parameters=[f"{k}: {v}" for k, v in algorithm.parameters.items()] or None,
    )
    source_ref = hd.sr.SourceImageForRegion(
        referenced_sop_class_uid=source.SOPClassUID, referenced_sop_instance_uid=source.SOPInstanceUID
    )
    groups = []
    for finding in best_findings(findings_from_record(record, default_label), max_findings):
        graphic_type = "POINT" if finding.kind == "point" else "POLYLINE"
        region = hd.sr.ImageRegion(
            graphic_type=graphic_type, graphic_data=to_image_coordinates(finding), source_image=source_ref
        )
        measurements = [
            hd.sr.Measurement(name=_code(hd, _score_concept(name, concepts)), value=value, unit=unitless)
            for name, value in finding.scores.items()
        ]
        groups.append(
            hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
                tracking_identifier=hd.sr.TrackingIdentifier(
                    uid=derived_uid(sop_uid, finding.kind, str(finding.index)),
                    identifier=f"{finding.kind} {finding.index + 1}",
                ),
                referenced_region=region,
                finding_type=_code(hd, _finding_type(finding.label)),
                algorithm_id=algorithm_id,
                measurements=measurements or None,
            )
        )
    # TID 1501 group: did the algorithm run and find anything (so an image without findings still
    # gets a report, which highdicom's TID 1500 needs at least one group for)
    summary_value = codes.DCM.AllAlgorithmsSucceededWithFindings if groups else codes.DCM.AllAlgorithmsSucceededWithoutFindings
    groups.append(
        hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(uid=derived_uid(sop_uid, "summary"), identifier="processing summary"),
            algorithm_id=algorithm_id,
            qualitative_evaluations=[
                hd.sr.QualitativeEvaluation(name=codes.DCM.CADProcessingAndFindingsSummary, value=summary_value)
            ],
        )
    )
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=derived_uid(algorithm.name, algorithm.version, algorithm.fingerprint, "device"),
            name=algorithm.display_name[:64],
            manufacturer_name=algorithm.manufacturer,
            model_name=algorithm.software_version[:64],
        ),
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=_code(hd, _procedure(source)),
        imaging_measurements=groups,
    )
    sr_type = {"enhanced": hd.sr.EnhancedSR, "comprehensive": hd.sr.ComprehensiveSR, "comprehensive3d": hd.sr.Comprehensive3DSR}[sr_class]
    private = hd.coding_schemes.CodingSchemeIdentificationItem(designator=PRIVATE_SCHEME, name="monai-mammo private concepts")
    return sr_type(
        evidence=[source],
        content=report[0],
        series_instance_uid=series_uid,
        series_number=OUTPUT_SERIES_NUMBERS["sr"],
        sop_instance_uid=sop_uid,
        instance_number=1,
        manufacturer=algorithm.manufacturer,
        is_complete=True,
        coding_schemes=[private],
        series_description=(series_description or f"{algorithm.display_name} findings")[:64],
        manufacturer_model_name=algorithm.display_name[:64],
        software_versions=algorithm.software_version[:64],
    )


def write_structured_report(
    path: str | os.PathLike, source: Any, record: Mapping[str, Any], algorithm: Algorithm, **kwargs: Any
) -> str:
    """Build the SR (:func:`build_structured_report` arguments) and write it atomically; return the path."""
    return save_dataset(build_structured_report(source, record, algorithm, **kwargs), path)


def read_structured_report(report: Any, score_concepts: Mapping[str, tuple[str, str, str]] | None = None) -> list[dict[str, Any]]:
    """The findings of a TID 1500 report: a path or a dataset, read with highdicom.

    Returns one dict per planar ROI group: ``kind`` ("point" | "box"), ``coordinates`` (stored
    pixels, :func:`~monai_mammo.dicom.findings.from_image_coordinates`), ``graphic_type``,
    ``finding_type`` ``(value, scheme, meaning)``, ``scores`` (field name -> value, names
    recovered through ``score_concepts``; unknown concepts under their meaning),
    ``source_sop_instance_uid``, ``tracking_identifier`` and ``index`` (the entry's position in
    the record's ``points`` / ``boxes``).
    """
    hd = require_highdicom()
    import pydicom

    dataset = report if isinstance(report, pydicom.Dataset) else pydicom.dcmread(str(report))
    sr_types = {sr_type.__name__: sr_type for sr_type in (hd.sr.EnhancedSR, hd.sr.ComprehensiveSR, hd.sr.Comprehensive3DSR)}
    name = getattr(dataset.SOPClassUID, "name", "").replace(" Storage", "").replace(" ", "")
    if name not in sr_types:
        raise ValueError(f"not an Enhanced / Comprehensive / Comprehensive 3D SR: SOP class {dataset.SOPClassUID}")
    sr = sr_types[name].from_dataset(dataset, copy=True)
    concepts = {**SCORE_CONCEPTS, **dict(score_concepts or {})}
    names = {(v[0], v[1]): k for k, v in concepts.items()}
    out = []
    for group in sr.content.get_planar_roi_measurement_groups():
        roi = group.roi
        graphic_type = roi.graphic_type.value
        reference = roi.ContentSequence[0].ReferencedSOPSequence[0]
        scores = {}
        for measurement in group.get_measurements():
            key = (measurement.name.value, measurement.name.scheme_designator)
            scores[names.get(key, measurement.name.meaning)] = float(measurement.value)
        ftype = group.finding_type
        out.append(
            {
                "kind": "point" if graphic_type == "POINT" else "box",
                "graphic_type": graphic_type,
                "coordinates": from_image_coordinates(graphic_type, roi.value),
                "graphic_data": roi.value,
                "finding_type": (ftype.value, ftype.scheme_designator, ftype.meaning) if ftype is not None else None,
                "scores": scores,
                "source_sop_instance_uid": str(reference.ReferencedSOPInstanceUID),
                "tracking_identifier": group.tracking_identifier,
                "index": int(group.tracking_identifier.rsplit(" ", 1)[-1]) - 1,
            }
        )
    return out

