"""monai_mammo.compositors: image compositors, a plugin kind (modules are imported by name; this
package stays import-light).

The compositor interface
------------------------
A compositor pastes a clear lesion (a *mass* patch) into background tissue (a *glands* patch) and
says how much of the mass each pixel holds. Any plugin can provide one through the
``register_compositors`` hook (:mod:`monai_mammo.hookspecs`); configs pick it by name with
``monai_mammo.registry.build_compositor(name, **kwargs)``. A compositor is a callable (usually a
``torch.nn.Module`` without learned parameters) with this contract::

    composite, alpha = compositor(mass, glands, box)

- ``mass``, ``glands``: float tensors of the same shape, either one sample ``(C, H, W)`` or a batch
  ``(B, C, H, W)``, on the same device and dtype. Channel-first, rows = y, columns = x.
- ``box``: the mass's bounding box ``[x0, y0, x1, y1]`` in pixels of ``mass`` (x1, y1 exclusive,
  pixel edges), a sequence or tensor of shape ``(4,)``; for a batch, a ``(B, 4)`` tensor (or a
  ``(4,)`` box shared by the whole batch). A box partly outside the patch is clipped to it; an
  empty or inverted box (``x1 <= x0`` or ``y1 <= y0``), or one entirely outside, raises
  ``ValueError``.
- ``composite``: same shape, dtype and device as ``mass``.
- ``alpha``: the per-pixel weight of the mass in ``[0, 1]``, shaped ``(1, H, W)`` for one sample
  and ``(B, 1, H, W)`` for a batch (it broadcasts over channels). Compositors that have no
  spatial alpha map (``simple``) return a constant map, so callers never special-case them.
- Batched calls must give the same result as calling per sample and must not be slower per
  sample than a loop.

Helpers for implementers: :func:`monai_mammo.compositors.alpha_blend.gaussian_alpha_map` (the
DAB-Net Gaussian alpha, vectorised over a batch of boxes) and
:func:`monai_mammo.compositors.alpha_blend.prepare_composite_inputs` (shape checks, batching and
box validation/clipping shared by every compositor).

Built-ins: ``alpha_blend`` (:class:`~monai_mammo.compositors.alpha_blend.GaussianAlphaBlend`,
DAB-Net Eq. 1) and ``simple`` (:class:`~monai_mammo.compositors.simple.FixedWeightBlend`, the
paper's ablation).
"""
