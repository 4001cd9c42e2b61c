"""DICOM outputs of ``monai-mammo predict``: Structured Reports, Segmentations, Secondary Captures.

All three are built with `highdicom <https://highdicom.readthedocs.io>`_ (the optional extra
``pip install "monai-mammo[dicom]"``; it needs pydicom >= 3, which MONAI Label 0.8.5's environment
cannot have, so nothing in the core package imports it). Each writer takes plain inputs: the
source image's ``pydicom.Dataset`` (a header read with ``stop_before_pixels=True`` is enough), the
findings record a bundle writes as JSON, and an :class:`~monai_mammo.dicom.common.Algorithm`.

* :mod:`.findings`: findings records -> :class:`~.findings.Finding` and the DICOM image
  coordinate convention (pixel centres at ``+0.5``); no highdicom needed;
* :mod:`.common`: the lazy highdicom import, the algorithm identity, deterministic UIDs, the
  source header tidy-up highdicom needs;
* :mod:`.structured_report`: TID 1500 measurement report, one planar ROI group per finding;
* :mod:`.segmentation`: one SEG per source image from a label map or a probability map;
* :mod:`.secondary_capture`: the findings burnt into an RGB Secondary Capture.

Coordinates follow :mod:`monai_mammo.coordinates`.
"""

from monai_mammo.dicom.common import Algorithm, HighdicomMissingError, require_highdicom
from monai_mammo.dicom.findings import Finding, findings_from_record

__all__ = ["Algorithm", "Finding", "HighdicomMissingError", "findings_from_record", "require_highdicom"]
