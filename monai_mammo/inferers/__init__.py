"""monai_mammo.inferers (modules are imported by name; this package stays import-light).

- ``monai_mammo.inferers.breast_sliding_window``: ``MaskedSlidingWindowInferer`` (breast-only
  sliding window at full resolution, same tiling/blending as MONAI's SlidingWindowInferer).
- ``monai_mammo.inferers.candidates``: ASN candidate extraction (threshold, connected components,
  ASN score), FPR crop scoring (final = ASN x FPR) and mapping points back to original pixels.
"""
