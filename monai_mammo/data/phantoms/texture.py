"""Power-law (1/f^beta) random textures and the spectral estimator that measures them.

Mammographic parenchyma has an isotropic power spectrum that falls as a power law,
``P(f) ∝ 1 / f^beta`` with ``beta ≈ 3`` (Burgess, Jacobson & Judy, "Human observer detection
experiments with mammograms and power-law noise", Med. Phys. 28(4), 2001). Filtering white
Gaussian noise by ``|f|^(-beta/2)`` in the Fourier domain gives a Gaussian random field with exactly
that spectrum; this is the standard "power-law noise" background used in observer studies and as
the parenchymal layer of software breast phantoms (Bakic et al., Med. Phys. 2002; Carton et al.,
Med. Phys. 38(2), 2011; Kiarashi et al., Med. Phys. 42(1), 2015).

Example:
    >>> import numpy as np
    >>> field = power_law_noise((256, 256), beta=3.0, rng=np.random.default_rng(0))
    >>> round(float(field.std()), 3)
    1.0
    >>> 2.5 < fit_power_law_exponent(field) < 3.5
    True
"""

from __future__ import annotations

import numpy as np
import scipy.fft

__all__ = ["power_law_noise", "radial_power_spectrum", "fit_power_law_exponent"]


def power_law_noise(
    shape: tuple[int, int],
    beta: float = 3.0,
    rng: np.random.Generator | None = None,
    f_min: float | None = None,
    dtype: type = np.float32,
) -> np.ndarray:
    """Zero-mean, unit-variance Gaussian random field whose power spectrum is ``1 / |f|^beta``.

    Args:
        shape: (H, W) of the field.
        beta: spectral exponent (default 3.0, Burgess et al. 2001).
        rng: random generator (default: a fresh unseeded one; pass one for determinism).
        f_min: radial frequency (cycles/pixel) below which the spectrum is flat, so that a few
            lowest-frequency components do not dominate a small field. Default ``1 / max(shape)``
            (the fundamental), i.e. a pure power law over the whole resolvable band.
        dtype: output dtype (default float32; the FFT runs in single precision for speed).

    Returns:
        array of ``shape`` and ``dtype``, mean 0, standard deviation 1.
    """
    if len(shape) != 2 or min(shape) < 2:
        raise ValueError(f"power_law_noise: shape must be (H, W) with H, W >= 2, got {shape}")
    rng = np.random.default_rng() if rng is None else rng
    height, width = int(shape[0]), int(shape[1])
    white = rng.standard_normal((height, width), dtype=np.float32)
    spectrum = scipy.fft.rfft2(white, workers=-1)
    fy = np.fft.fftfreq(height).astype(np.float32)[:, None]
    fx = np.fft.rfftfreq(width).astype(np.float32)[None, :]
    radial = np.sqrt(fy * fy + fx * fx)
    floor = np.float32(1.0 / max(height, width) if f_min is None else f_min)
    # amplitude ∝ f^(-beta/2) so that power ∝ f^(-beta) (Burgess et al. 2001, power-law model)
    amplitude = np.maximum(radial, floor) ** np.float32(-beta / 2.0)
    amplitude[0, 0] = 0.0  # zero mean
    spectrum *= amplitude
    field = scipy.fft.irfft2(spectrum, s=(height, width), workers=-1)
    field -= field.mean()
    field /= max(float(field.std()), 1e-12)
    return field.astype(dtype, copy=False)


def radial_power_spectrum(image: np.ndarray, n_bins: int = 48) -> tuple[np.ndarray, np.ndarray]:
    """Radially averaged power spectrum of a 2D image (mean removed, Hann-windowed).

    Args:
        image: 2D array.
        n_bins: number of logarithmically spaced radial-frequency bins between the fundamental and
            Nyquist (0.5 cycles/pixel).

    Returns:
        (frequencies in cycles/pixel, mean power in each bin); empty bins are dropped.
    """
    image = np.asarray(image, dtype=np.float64)
    if image.ndim != 2:
        raise ValueError(f"radial_power_spectrum expects a 2D image, got shape {image.shape}")
    height, width = image.shape
    # a separable Hann window suppresses the edge discontinuity that would add a 1/f^2 component
    window = np.hanning(height)[:, None] * np.hanning(width)[None, :]
    power = np.abs(np.fft.fft2((image - image.mean()) * window)) ** 2
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.fftfreq(width)[None, :]
    radial = np.sqrt(fy * fy + fx * fx)
    edges = np.geomspace(1.0 / min(height, width), 0.5, n_bins + 1)
    index = np.digitize(radial.ravel(), edges) - 1
    valid = (index >= 0) & (index < n_bins)
    sums = np.bincount(index[valid], weights=power.ravel()[valid], minlength=n_bins)
    counts = np.bincount(index[valid], minlength=n_bins)
    centres = np.sqrt(edges[:-1] * edges[1:])
    keep = counts > 0
    return centres[keep], sums[keep] / counts[keep]


def fit_power_law_exponent(image: np.ndarray, f_low: float = 0.02, f_high: float = 0.25) -> float:
    """Estimate beta by a least-squares line through log P(f) vs log f over ``[f_low, f_high]``.

    The band excludes the lowest frequencies (few samples, window leakage) and the highest ones
    (noise, pixel blur), as in Burgess et al. (2001) who fit over the mid-frequency band.

    Args:
        image: 2D array (e.g. a square region inside the breast).
        f_low: lowest radial frequency of the fit, cycles/pixel (default 0.02).
        f_high: highest radial frequency of the fit, cycles/pixel (default 0.25).

    Returns:
        the fitted exponent beta (positive for a falling spectrum).
    """
    freqs, power = radial_power_spectrum(image)
    band = (freqs >= f_low) & (freqs <= f_high) & (power > 0)
    if band.sum() < 3:
        raise ValueError(f"fit_power_law_exponent: too few frequency bins in [{f_low}, {f_high}] for an image of shape {np.shape(image)}")
    slope, _ = np.polyfit(np.log(freqs[band]), np.log(power[band]), 1)
    return float(-slope)
