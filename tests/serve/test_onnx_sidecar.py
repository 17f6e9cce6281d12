"""OnnxPolicy on hand-built graphs (no torch): fixed-batch graphs and runtime normalisation."""

import numpy as np
import pytest
from _serve_testlib import write_linear_onnx

from librobot.core.errors import ConfigError, SpecError
from librobot.serve.onnx_policy import OnnxPolicy
from librobot.serve.sidecar import Normalizer


def test_a_fixed_batch_graph_is_run_once_per_item(tmp_path):
    w, b = write_linear_onnx(tmp_path, fixed_batch=True)
    policy = OnnxPolicy(tmp_path)
    states = np.random.default_rng(0).normal(size=(3, 1, 6)).astype(np.float32)
    chunks = policy.predict_chunks({"observation.state": states}, [None] * 3)
    np.testing.assert_allclose(chunks, (states[:, 0] @ w + b).reshape(3, 4, 2), rtol=1e-5, atol=1e-5)
    with pytest.raises(SpecError, match=r"expected shape \[B, 1, 6\]"):
        policy.predict_chunks({"observation.state": states[:, :, :5]}, [None] * 3)


def test_runtime_normalisation_matches_the_formulas_by_hand(tmp_path):
    rng = np.random.default_rng(1)
    mean, std = rng.normal(size=6), rng.uniform(0.5, 2.0, 6)
    q01, q99 = -rng.uniform(1, 2, 2), rng.uniform(1, 2, 2)
    norm = {
        "observation.state": Normalizer("mean_std", {"mean": tuple(mean), "std": tuple(std)}),
        "action": Normalizer("quantile", {"q01": tuple(q01), "q99": tuple(q99)}),
    }
    w, b = write_linear_onnx(tmp_path, normalization=norm)
    policy = OnnxPolicy(tmp_path)
    state = rng.normal(size=6)
    graph_out = (((state - mean) / std) @ w + b).reshape(4, 2)  # the graph works in normalised units
    expected = (graph_out + 1) / 2 * (q99 - q01) + q01  # [-1, 1] → [q01, q99]
    np.testing.assert_allclose(policy.predict_chunk({"observation.state": state}), expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ConfigError, match="needs equally long 'q01' and 'q99'"):
        Normalizer("quantile", {"q01": (0.0,), "q99": (1.0, 2.0)})
