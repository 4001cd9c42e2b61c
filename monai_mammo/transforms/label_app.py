"""Hand a 2D label to MONAI Label in the layout its bundle app writes correctly.

Our images are ``(C, H, W)`` with rows first. MONAI Label 0.8.5's bundle app appends a
``Restored`` step that compares the label with the reference image's ``meta["spatial_shape"]``
(resizing on mismatch, and assuming a channel dimension), and its ITK writer transposes the array
before writing, as MONAI's x-first readers would need. A 2D label therefore arrives intact only as
an ``(W, H)`` array whose reference ``spatial_shape`` reads ``(W, H)``; this transform produces
exactly that, as the last step of a bundle's ``postprocessing``.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform


class ToLabelAppLayoutd(MapTransform):
    """Turn ``(1, H, W)`` label maps into the ``(W, H)`` layout MONAI Label writes the right way round.

    Example::

        >>> to_label_app = ToLabelAppLayoutd(keys="pred", ref_key="image")
        >>> d = to_label_app({"pred": torch.zeros(1, 4, 3), "image": MetaTensor(torch.zeros(1, 4, 3))})
        >>> tuple(d["pred"].shape), tuple(d["image"].meta["spatial_shape"])
        ((3, 4), (3, 4))

    Args:
        keys: the label keys, each ``(1, H, W)`` or ``(H, W)``.
        ref_key: the image MONAI Label's ``Restored`` step compares with (the bundle's input key,
            default ``"image"``); its ``spatial_shape`` is set to ``(W, H)``.
        allow_missing_keys: skip absent keys instead of raising.
    """

    def __init__(self, keys: KeysCollection, ref_key: str = "image", allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.ref_key = ref_key

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            label = d[key]
            if label.ndim == 3 and label.shape[0] == 1:
                label = label[0]
            if label.ndim != 2:
                raise ValueError(f"{key}: expected a (1, H, W) or (H, W) label, got shape {tuple(d[key].shape)}")
            d[key] = label.transpose(0, 1).contiguous()
            reference = d.get(self.ref_key)
            if isinstance(reference, MetaTensor):
                reference.meta["spatial_shape"] = tuple(d[key].shape)
        return d
