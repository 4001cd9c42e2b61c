"""monai_mammo.inferers (modules are imported by name; this package stays import-light).

- ``monai_mammo.inferers.breast_sliding_window``: ``MaskedSlidingWindowInferer`` (breast-only
  sliding window at full resolution, same tiling/blending as MONAI's SlidingWindowInferer).

Regions from the inferred maps (candidates, re-scoring, back to original pixels) are
:mod:`monai_mammo.regions`.
"""
