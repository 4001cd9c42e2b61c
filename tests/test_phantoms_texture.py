"""Power-law texture: the measured spectral exponent matches the requested one (Burgess et al. 2001)."""

from __future__ import annotations

import numpy as np
import pytest

from monai_mammo.data.phantoms.texture import fit_power_law_exponent, power_law_noise, radial_power_spectrum


@pytest.mark.parametrize("beta", [2.0, 3.0, 3.5])
def test_measured_exponent_matches_requested(beta: float) -> None:
    fits = [fit_power_law_exponent(power_law_noise((256, 256), beta=beta, rng=np.random.default_rng(seed))) for seed in range(3)]
    assert abs(float(np.mean(fits)) - beta) < 0.15, fits


def test_white_noise_has_flat_spectrum() -> None:
    # the estimator itself must be able to fail: white noise has beta ≈ 0, not 3
    white = np.random.default_rng(0).standard_normal((256, 256))
    assert abs(fit_power_law_exponent(white)) < 0.2


def test_field_is_standardised_deterministic_and_float32() -> None:
    a = power_law_noise((128, 96), rng=np.random.default_rng(5))
    b = power_law_noise((128, 96), rng=np.random.default_rng(5))
    c = power_law_noise((128, 96), rng=np.random.default_rng(6))
    assert a.dtype == np.float32 and a.shape == (128, 96)
    assert abs(float(a.mean())) < 1e-4 and abs(float(a.std()) - 1.0) < 1e-3
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_radial_spectrum_falls_with_frequency() -> None:
    freqs, power = radial_power_spectrum(power_law_noise((128, 128), rng=np.random.default_rng(0)))
    assert np.all(np.diff(freqs) > 0)
    assert power[0] > 100 * power[-1]


def test_bad_shape_is_refused() -> None:
    with pytest.raises(ValueError, match="shape"):
        power_law_noise((1, 64))
