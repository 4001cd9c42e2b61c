"""On-the-fly composite samples for DAB-Net: clear masses pasted into gland patches.

Paper: Wang et al., "Disentangling Disease-related Representation from Obscure for Disease
Prediction" (DAB-Net), ICML 2022, Sec. 3.2 (composites, Eq. 1) and Sec. 4.1 (stage 1: composites
only, as many as the real set; stage 2: real data plus composites amounting to 30 % of it).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Randomizable

__all__ = ["RandMassCompositingd", "default_pool_loader"]


def default_pool_loader(item: Mapping[str, Any]) -> torch.Tensor:
    """Load a pool image (path or array) as a float32 ``(C, H, W)`` tensor scaled to [0, 1] (min-max
    per image, like ``monai.transforms.ScaleIntensity``). Files are read by the project's reader,
    :class:`monai_mammo.transforms.io.LoadRadiographd` (rows = y, see :mod:`monai_mammo.coordinates`),
    as the dabnet bundle reads its real ROIs."""
    image = item["image"]
    if isinstance(image, (str, os.PathLike)):
        from monai_mammo.transforms.io import LoadRadiographd

        image = LoadRadiographd(keys="image")({"image": image})["image"]
    tensor = torch.as_tensor(np.asarray(image) if not isinstance(image, torch.Tensor) else image).float()
    if isinstance(tensor, MetaTensor):
        tensor = tensor.as_tensor()
    if tensor.ndim == 2:
        tensor = tensor[None]
    low, high = tensor.min(), tensor.max()
    return (tensor - low) / (high - low).clamp(min=1e-8)


def _like(value: Any, reference: Any) -> Any:
    """``value`` converted to the container type of ``reference`` so composite and real collate."""
    if isinstance(reference, MetaTensor):  # MetaTensor and Tensor do not collate together
        return MetaTensor(torch.as_tensor(value, dtype=reference.dtype).reshape(reference.shape), meta=dict(reference.meta))
    if isinstance(reference, torch.Tensor):
        return torch.as_tensor(value, dtype=reference.dtype).reshape(reference.shape)
    if isinstance(reference, np.ndarray):
        return np.asarray(value, dtype=reference.dtype).reshape(reference.shape)
    if isinstance(reference, (bool, int, float)):
        return type(reference)(value)
    return value


class RandMassCompositingd(Randomizable, MapTransform):
    """Add DAB-Net composite samples on the fly (Wang et al., ICML 2022, Sec. 3.2 and 4.1).

    For every incoming real sample it returns a list: the real sample (unless ``keep_real`` is
    False) followed by ``k`` composites, ``k = floor(ratio) + Bernoulli(ratio - floor(ratio))``, so
    on average ``ratio`` composites per real sample (paper stage 2: ``ratio=0.3``; stage 1:
    ``ratio=1, keep_real=False`` gives composites only, as many as the real set). MONAI's
    ``list_data_collate`` (the default of ``monai.data.DataLoader``) flattens the lists, so batches
    have a variable size around ``batch_size * (keep_real + ratio)``.

    A composite draws a random clear mass (with its box and label) from ``masses`` and a random
    gland patch from ``glands`` and blends them with ``compositor`` (default ``alpha_blend``, DAB-Net
    Eq. 1). It is a copy of the real sample's dict with:

    - ``keys[0]`` (the image): the composite x_c (a ``MetaTensor`` with the real sample's meta
      when the real image is one, ``filename_or_obj`` saying which mass and gland it came from);
    - ``label_key``: the mass's label (paper: "the same as the disease labels of corresponding
      clear masses");
    - ``mass_key`` / ``glands_key``: x_m and x_g, the reconstruction targets;
    - ``composite_key``: ``True``; ``obscured_key`` (if the real dict has it): ``True``.

    Real samples get ``composite_key`` False and zero placeholders for x_m / x_g (same shape as
    the image) so a batch collates; the loss ignores them there.

    Where the cost goes: the pools are loaded, resized and stacked once (first call or
    :meth:`preload`), so a composite costs one Gaussian map and one blend on a single patch
    (about a millisecond at 224 x 224), negligible next to a ResNet-34 step (see
    ``benchmarks/bench_dabnet_throughput.py``). Place it after the cached, deterministic
    transforms (it is Randomizable, so ``CacheDataset`` caches everything before it) and before
    random flips that should apply to x_m / x_g as well.

    Args:
        keys: the image key (one key); composites replace it.
        masses: the clear-mass pool: dicts with ``"image"`` (path, array or tensor), ``"label"`` and
            ``"box"`` (or ``"boxes"``, first box used) in pixels of that image, e.g. a datalist's
            ``"masses"`` list.
        glands: the gland pool: dicts with ``"image"`` (or bare paths / arrays), e.g. ``"glands"``.
        ratio: expected composites per real sample; default 0.3 (paper: 30 % of the real set).
        keep_real: keep the real sample in the output; default True (False: stage 1).
        compositor: a compositor (see :mod:`monai_mammo.compositors`) or a registered name;
            default ``"alpha_blend"``.
        compositor_kwargs: keyword arguments when ``compositor`` is a name; default none.
        base_dir: folder that relative pool paths are relative to (the datalist's folder);
            default: the working directory.
        pool_loader: ``callable(item) -> (C, H, W) tensor`` reading a pool entry; default
            :func:`default_pool_loader` (min-max scaled to [0, 1]). It must match the intensity
            preprocessing of the real images.
        spatial_size: ``(H, W)`` to resize pool images to (boxes scaled alike); default ``None``:
            pool images must already have the real images' size.
        resize_mode: interpolation of that resize (``torch.nn.functional.interpolate``); default
            ``"area"``, the mode of ``monai.transforms.Resized`` that resizes the real ROIs, so pool
            images and real images are resized alike.
        label_key, mass_key, glands_key, composite_key, obscured_key: output keys; defaults
            ``"label"``, ``"x_m"``, ``"x_g"``, ``"is_composite"``, ``"obscured"``.
        allow_missing_keys: MapTransform's flag; default False.

    Example::

        >>> import torch
        >>> masses = [{"image": torch.rand(1, 32, 32), "label": 1, "box": [8, 8, 24, 24]}]
        >>> glands = [{"image": torch.rand(1, 32, 32)}]
        >>> t = RandMassCompositingd("image", masses, glands, ratio=1.0)
        >>> out = t({"image": torch.rand(1, 32, 32), "label": 0})
        >>> [bool(s["is_composite"]) for s in out], int(out[1]["label"])
        ([False, True], 1)
    """

    def __init__(
        self,
        keys: KeysCollection,
        masses: Sequence[Mapping[str, Any]],
        glands: Sequence[Mapping[str, Any] | Any],
        ratio: float = 0.3,
        keep_real: bool = True,
        compositor: str | Callable[..., tuple[torch.Tensor, torch.Tensor]] = "alpha_blend",
        compositor_kwargs: Mapping[str, Any] | None = None,
        base_dir: str | os.PathLike | None = None,
        pool_loader: Callable[[Mapping[str, Any]], torch.Tensor] | None = None,
        spatial_size: Sequence[int] | None = None,
        resize_mode: str = "area",
        label_key: str = "label",
        mass_key: str = "x_m",
        glands_key: str = "x_g",
        composite_key: str = "is_composite",
        obscured_key: str = "obscured",
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        if len(self.keys) != 1:
            raise ValueError(f"RandMassCompositingd composites one image key, got keys {self.keys}")
        if ratio < 0:
            raise ValueError(f"ratio must be >= 0, got {ratio}")
        if not keep_real and ratio < 1:
            raise ValueError(f"keep_real=False (composites only) needs ratio >= 1, got {ratio}")
        if not masses:
            raise ValueError("RandMassCompositingd: the clear-mass pool 'masses' is empty")
        if not glands:
            raise ValueError("RandMassCompositingd: the gland pool 'glands' is empty")
        self.masses = list(masses)
        self.glands = [g if isinstance(g, Mapping) else {"image": g} for g in glands]
        self.ratio = float(ratio)
        self.keep_real = keep_real
        if isinstance(compositor, str):
            from monai_mammo.registry import build_compositor

            compositor = build_compositor(compositor, **dict(compositor_kwargs or {}))
        self.compositor = compositor
        self.base_dir = None if base_dir is None else str(base_dir)
        self.pool_loader = pool_loader or default_pool_loader
        self.spatial_size = None if spatial_size is None else tuple(int(s) for s in spatial_size)
        self.resize_mode = resize_mode
        self.label_key = label_key
        self.mass_key = mass_key
        self.glands_key = glands_key
        self.composite_key = composite_key
        self.obscured_key = obscured_key
        self._mass_images: torch.Tensor | None = None
        self._mass_boxes: torch.Tensor | None = None
        self._mass_labels: list[Any] = []
        self._gland_images: torch.Tensor | None = None
        self._n_composites = 0
        self._mass_index = np.zeros(0, dtype=int)
        self._gland_index = np.zeros(0, dtype=int)

    # pools --------------------------------------------------------------------------------------
    def _resolve(self, item: Mapping[str, Any]) -> Mapping[str, Any]:
        image = item.get("image")
        if image is None:
            raise KeyError(f"RandMassCompositingd: pool entry has no 'image': {dict(item)}")
        if isinstance(image, (str, os.PathLike)) and self.base_dir and not os.path.isabs(image):
            item = {**item, "image": os.path.join(self.base_dir, image)}
        return item

    def _load(self, item: Mapping[str, Any]) -> tuple[torch.Tensor, tuple[float, float]]:
        """(image (C, H, W), (scale_y, scale_x)) of a pool entry after the optional resize."""
        image = self.pool_loader(self._resolve(item))
        if image.ndim != 3:
            raise ValueError(f"pool image {item.get('image')!r} must load as (C, H, W), got {tuple(image.shape)}")
        if self.spatial_size is None or tuple(image.shape[-2:]) == self.spatial_size:
            return image.float(), (1.0, 1.0)
        scale = (self.spatial_size[0] / image.shape[-2], self.spatial_size[1] / image.shape[-1])
        corners = False if self.resize_mode in ("linear", "bilinear", "bicubic", "trilinear") else None
        resized = F.interpolate(image[None].float(), size=self.spatial_size, mode=self.resize_mode, align_corners=corners)[0]
        return resized, scale

    def preload(self) -> RandMassCompositingd:
        """Load, resize and stack both pools now (otherwise done on first call)."""
        images, boxes, labels = [], [], []
        for index, item in enumerate(self.masses):
            if self.label_key not in item and "label" not in item:
                raise KeyError(f"mass pool entry {index} ({item.get('image')!r}) has no 'label'")
            box = item.get("box")
            if box is None and item.get("boxes"):
                box = item["boxes"][0]
            if box is None:
                raise KeyError(f"mass pool entry {index} ({item.get('image')!r}) has no 'box' / 'boxes'")
            image, (scale_y, scale_x) = self._load(item)
            images.append(image)
            x0, y0, x1, y1 = (float(v) for v in box)
            boxes.append([x0 * scale_x, y0 * scale_y, x1 * scale_x, y1 * scale_y])
            labels.append(item.get(self.label_key, item.get("label")))
        glands = [self._load(item)[0] for item in self.glands]
        shapes = {tuple(t.shape) for t in images + glands}
        if len(shapes) != 1:
            raise ValueError(
                f"pool images have different shapes {sorted(shapes)}; set spatial_size to resize them"
            )
        self._mass_images = torch.stack(images)
        self._mass_boxes = torch.tensor(boxes, dtype=torch.float64)
        self._mass_labels = labels
        self._gland_images = torch.stack(glands)
        return self

    # randomness ----------------------------------------------------------------------------------
    def randomize(self, data: Any = None) -> None:
        whole = int(np.floor(self.ratio))
        self._n_composites = whole + int(self.R.random_sample() < self.ratio - whole)
        self._mass_index = self.R.randint(0, len(self.masses), size=self._n_composites)
        self._gland_index = self.R.randint(0, len(self.glands), size=self._n_composites)

    # call ------------------------------------------------------------------------------------------
    def __call__(self, data: Mapping[Hashable, Any]) -> list[dict[Hashable, Any]]:
        if self._mass_images is None:
            self.preload()
        assert self._mass_images is not None and self._gland_images is not None and self._mass_boxes is not None
        d = dict(data)
        key = self.first_key(d)
        if key == []:  # allow_missing_keys and the image is absent: pass through
            return [d]
        real_image = d[key]
        shape = tuple(real_image.shape)
        if shape != tuple(self._mass_images.shape[1:]):
            raise ValueError(
                f"RandMassCompositingd: image {key!r} has shape {shape} but pool images are "
                f"{tuple(self._mass_images.shape[1:])}; preprocess both alike or set spatial_size"
            )
        self.randomize()
        outputs: list[dict[Hashable, Any]] = []
        if self.keep_real:
            real = dict(d)
            placeholder = torch.zeros(shape, dtype=torch.float32)
            real[self.mass_key] = placeholder
            real[self.glands_key] = placeholder.clone()
            real[self.composite_key] = torch.tensor(False)
            outputs.append(real)
        if self._n_composites:
            mass = self._mass_images[self._mass_index]
            glands = self._gland_images[self._gland_index]
            # one batched compositor call for all composites of this sample
            composite, _ = self.compositor(mass, glands, self._mass_boxes[self._mass_index])
            for j in range(self._n_composites):
                m_index, g_index = int(self._mass_index[j]), int(self._gland_index[j])
                sample = dict(d)
                image: Any = composite[j].to(torch.float32)
                if isinstance(real_image, MetaTensor):
                    meta = copy.deepcopy(real_image.meta)
                    meta["filename_or_obj"] = (
                        f"composite(mass={self.masses[m_index].get('image')!s}, glands={self.glands[g_index].get('image')!s})"
                    )
                    image = MetaTensor(image, meta=meta)
                elif isinstance(real_image, np.ndarray):
                    image = image.numpy()
                sample[key] = image
                if self.label_key in d:
                    sample[self.label_key] = _like(self._mass_labels[m_index], d[self.label_key])
                else:
                    sample[self.label_key] = self._mass_labels[m_index]
                sample[self.mass_key] = mass[j].to(torch.float32)
                sample[self.glands_key] = glands[j].to(torch.float32)
                sample[self.composite_key] = torch.tensor(True)
                if self.obscured_key in d:
                    sample[self.obscured_key] = _like(True, d[self.obscured_key])
                outputs.append(sample)
        return outputs
