import numpy as np
import pytest

from librobot.core import batch as B
from librobot.core.errors import SpecError
from librobot.core.specs import BoxSpace, FeatureSpec


def test_box_normalisation_is_exact_inverse_on_random_points():
    rng = np.random.default_rng(0)
    space = BoxSpace(names=("throttle", "steer", "boom"), low=(-1.0, -0.6, 0.0), high=(1.0, 0.6, 2.5))
    x = rng.uniform(space.low_array, space.high_array, size=(100, 3))
    y = space.normalize(x)
    assert y.min() >= -1 and y.max() <= 1
    np.testing.assert_allclose(space.denormalize(y), x, rtol=0, atol=1e-12)
    np.testing.assert_allclose(space.normalize(space.low_array), -1)
    np.testing.assert_allclose(space.normalize(space.high_array), 1)
    assert space.index("boom") == 2
    assert not space.contains([0.0, 1.0, 1.0]) and space.contains([0.0, 0.5, 1.0])
    np.testing.assert_array_equal(space.clip([5.0, -5.0, 1.0]), [1.0, -0.6, 1.0])


def test_box_rejects_bad_definitions_and_shapes():
    with pytest.raises(SpecError, match="duplicate"):
        BoxSpace(names=("a", "a"), low=(0, 0), high=(1, 1))
    with pytest.raises(SpecError, match="finite low < high"):
        BoxSpace(names=("a",), low=(1,), high=(0,))
    space = BoxSpace(names=("a", "b"), low=(0, 0), high=(1, 1))
    with pytest.raises(SpecError, match="last axis of size 2"):
        space.normalize(np.zeros(3))
    assert BoxSpace.from_dict(space.to_dict()) == space


def test_feature_spec_validation_messages():
    spec = FeatureSpec("observation.state", (4,), names=("a", "b", "c", "d"))
    spec.validate(np.zeros((2, 3, 4), np.float32), batch_dims=2)
    with pytest.raises(SpecError, match=r"'observation.state': expected shape \[\*, 4\], got \[2, 5\]"):
        spec.validate(np.zeros((2, 5), np.float32), batch_dims=1)
    with pytest.raises(SpecError, match="expected dtype float32, got float64"):
        spec.validate(np.zeros(4))
    bad = np.zeros(4, np.float32)
    bad[2] = np.nan
    with pytest.raises(SpecError, match="NaN or inf"):
        spec.validate(bad)
    assert FeatureSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(SpecError, match="unknown keys"):
        FeatureSpec.from_dict({**spec.to_dict(), "colour": 1})


def make_batch(b=2, t=1, h=5):
    return {
        B.image_key("front"): np.random.rand(b, t, 3, 8, 8).astype(np.float32),
        B.OBS_STATE: np.random.rand(b, t, 6).astype(np.float32),
        B.TASK: ["pick"] * b,
        B.ACTION: np.random.rand(b, h, 4).astype(np.float32),
        B.ACTION_IS_PAD: np.zeros((b, h), bool),
    }


def test_batch_contract_validation():
    assert B.validate_batch(make_batch()) == 2
    assert B.camera_of(B.image_key("wrist")) == "wrist"
    padded = {**make_batch(), "observation.images.front_is_pad": np.zeros((2, 1), bool)}
    assert B.image_keys(padded) == ["observation.images.front"] and B.validate_batch(padded) == 2
    batch = make_batch()
    batch[B.TASK] = ["pick"] * 3
    with pytest.raises(SpecError, match="batch sizes disagree"):
        B.validate_batch(batch)
    batch = make_batch()
    batch[B.ACTION_IS_PAD] = np.zeros((2, 4), bool)
    with pytest.raises(SpecError, match=r"'action_is_pad': expected shape \[2, 5\]"):
        B.validate_batch(batch)
    batch = make_batch()
    batch[B.image_key("front")] = (batch[B.image_key("front")] * 255).astype(np.uint8)
    with pytest.raises(SpecError, match="expected a float tensor"):
        B.validate_batch(batch)
    with pytest.raises(SpecError, match="no 'action' key"):
        B.validate_batch({B.TASK: ["a"]}, require_action=True)
