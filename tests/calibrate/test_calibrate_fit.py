"""The fit recovers coefficients from points the simulator made under a known profile (with noise)."""

from __future__ import annotations

import pytest
from calib_helpers import BASE, SHAPES, measured_points, truth_profile

from autotune.calibrate.fit import default_parameters, fit_profile, held_out_errors, with_values
from autotune.errors import ConfigError

IMAGE = "frontend.image_preprocess_ms_base"
DECODE = "gpu_costs.decode_ms_per_seq"


def test_fit_recovers_known_coefficients_from_noisy_points() -> None:
    truth = truth_profile({IMAGE: 8.0, DECODE: 0.1})  # base: 4.0 and 0.03
    points = measured_points(truth, noise=0.02, seed=1)
    result = fit_profile(BASE, points, parameters=[IMAGE, DECODE], max_evals=60)
    assert result.parameters[IMAGE] == pytest.approx(8.0, rel=0.10)
    assert result.parameters[DECODE] == pytest.approx(0.1, rel=0.25)
    assert result.before.throughput_pct is not None and result.before.throughput_pct > 10
    assert result.after.throughput_pct is not None and result.after.throughput_pct < 4
    assert result.after.ttft_p50_pct is not None and result.after.ttft_p50_pct < 4
    assert result.loss_after < result.loss_before
    assert result.profile.frontend.image_preprocess_ms_base == result.parameters[IMAGE]
    assert result.evaluations <= 60
    # deterministic: the same points give the same fit
    again = fit_profile(BASE, points, parameters=[IMAGE, DECODE], max_evals=60)
    assert again.parameters == result.parameters


def test_the_base_profile_is_kept_when_it_is_already_right() -> None:
    points = measured_points(BASE, noise=0.0)
    result = fit_profile(BASE, points, parameters=[IMAGE], max_evals=10)
    assert result.after.throughput_pct == pytest.approx(0, abs=1e-6)
    assert result.parameters[IMAGE] == pytest.approx(BASE.frontend.image_preprocess_ms_base)


def test_hold_out_needs_eight_points_and_predicts_each_point_unseen() -> None:
    few = measured_points(BASE, noise=0.01)
    assert held_out_errors(BASE, few, parameters=[IMAGE]).method.startswith("none (6 points < 8")
    truth = truth_profile({IMAGE: 6.0})
    many = measured_points(truth, noise=0.01, shapes=SHAPES + SHAPES[:2])
    held = held_out_errors(BASE, many, parameters=[IMAGE], folds=2, max_evals=12)
    assert held.method == "2-fold cross-validation (seed 0)"
    assert len(held.points) == len(many) and [p.source for p in held.points] == [p.source for p in many]
    assert held.errors is not None and held.errors.throughput_pct is not None and held.errors.throughput_pct < 10


def test_parameters_are_checked_and_quantization_factors_need_two_points() -> None:
    with pytest.raises(ConfigError, match="fit parameter 'frontend.nope': not one of"):
        with_values(BASE, {"frontend.nope": 1.0})
    points = measured_points(BASE, noise=0.0, shapes=SHAPES[:2])
    fp8 = [p.model_copy(update={"engine_config": p.engine_config.model_copy(update={"quantization": "fp8"})}) for p in points]
    assert "gpu_costs.quantization_compute_factor.fp8" not in default_parameters(fp8[:1])
    assert "gpu_costs.quantization_compute_factor.fp8" in default_parameters(fp8)
    fitted = with_values(BASE, {"gpu_costs.quantization_compute_factor.fp8": 0.5})
    assert fitted.gpu_costs.quantization_compute_factor["fp8"] == 0.5
