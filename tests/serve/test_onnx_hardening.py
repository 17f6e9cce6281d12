"""Exported policies under hostile input: missing checksums, corrupt graphs, sidecars that disagree
with their graph, model paths leaving the export folder, and damaged sidecars (no torch)."""

import json
import shutil

import pytest
from _serve_testlib import write_linear_onnx

from librobot.core.errors import CheckpointError, ConfigError
from librobot.serve.errors import (
    CorruptModelError,
    GraphMismatchError,
    MissingChecksumError,
    PolicyArtifactError,
    SidecarError,
)
from librobot.serve.onnx_policy import OnnxPolicy
from librobot.serve.sidecar import load_sidecar, record_checksum, sha256_file


def _edit(directory, **changes):
    doc = json.loads((directory / "policy.json").read_text())
    for key, value in changes.items():
        if value is None:
            doc.pop(key, None)
        else:
            doc[key] = value
    (directory / "policy.json").write_text(json.dumps(doc))
    return doc


def test_the_checksum_is_required_and_a_truncated_graph_is_a_named_error(tmp_path):
    write_linear_onnx(tmp_path)
    good = (tmp_path / "policy.onnx").read_bytes()
    _edit(tmp_path, model_sha256=None)
    with pytest.raises(MissingChecksumError, match=r"records no model_sha256.*export is incomplete.*record_checksum"):
        OnnxPolicy(tmp_path)
    assert OnnxPolicy(tmp_path, verify=False).spec.model_sha256 is None  # the deliberate opt-out
    record_checksum(tmp_path)  # ... or recording it on purpose
    assert OnnxPolicy(tmp_path).spec.model_sha256 == sha256_file(tmp_path / "policy.onnx")

    (tmp_path / "policy.onnx").write_bytes(good[: len(good) // 2])
    with pytest.raises(CorruptModelError, match=r"policy.onnx: sha256 differs .*corrupt or truncated"):
        OnnxPolicy(tmp_path)
    # Unchecked, onnxruntime's own failure becomes a named error naming the file, not its traceback.
    with pytest.raises(CorruptModelError, match=r"policy.onnx: onnxruntime cannot load this model: .*corrupt or trunc"):
        OnnxPolicy(tmp_path, verify=False)
    _edit(tmp_path, model_sha256=None)
    with pytest.raises(CorruptModelError, match=r"onnxruntime said: .*Protobuf parsing failed") as info:
        OnnxPolicy(tmp_path, verify=False)
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_sidecar_shapes_and_dtypes_are_checked_against_the_graph_at_load(tmp_path):
    write_linear_onnx(tmp_path)  # graph: state float [batch, 1, 6] → action float [batch, 4, 2]
    doc = _edit(tmp_path)
    state = doc["inputs"][0]
    _edit(tmp_path, inputs=[{**state, "shape": [1, 7], "dtype": "float64"}], chunk_size=5)
    with pytest.raises(GraphMismatchError) as info:
        OnnxPolicy(tmp_path)
    lines = str(info.value).splitlines()
    assert "does not match its sidecar" in lines[0] and "re-export" in lines[-1]
    assert lines[1:-1] == [
        "  - input 'observation.state' ('state'): axis 2 is 7 in the sidecar [B, 1, 7], 6 in the graph ['batch', 1, 6]",
        "  - input 'observation.state' ('state'): dtype float64 in the sidecar, tensor(float) in the graph",
        "  - output 'action': axis 1 is 5 in the sidecar [B, 5, 2], 4 in the graph ['batch', 4, 2]",
    ]
    _edit(tmp_path, inputs=[{**state, "shape": [6]}], chunk_size=4)
    rank = r"rank 2 \[B, 6\] in the sidecar, rank 3 \['batch', 1, 6\] in the graph"
    with pytest.raises(GraphMismatchError, match=rank):
        OnnxPolicy(tmp_path)
    _edit(tmp_path, inputs=[{**state, "onnx_name": "obs"}])
    names = r"(?s)'obs' is not a graph input.*graph input 'state' .* not declared in the sidecar"
    with pytest.raises(GraphMismatchError, match=names):
        OnnxPolicy(tmp_path)
    fixed = tmp_path / "fixed"
    write_linear_onnx(fixed, fixed_batch=True)
    _edit(fixed, batch="dynamic")  # a graph with batch 1 would fail on the first batched request
    with pytest.raises(GraphMismatchError, match="graph fixes the batch axis to 1, the sidecar says batch 'dynamic'"):
        OnnxPolicy(fixed)


def test_the_model_path_stays_inside_the_export_folder(tmp_path):
    export, outside = tmp_path / "export", tmp_path / "outside"
    write_linear_onnx(export)
    outside.mkdir()
    shutil.copy(export / "policy.onnx", outside / "other.onnx")  # matching checksum: only the path rule stops it
    for name in ["../outside/other.onnx", str(outside / "other.onnx"), "sub/../policy.onnx", "..\\policy.onnx", "."]:
        _edit(export, model=name)
        with pytest.raises(SidecarError, match="is not a path inside the export folder"):
            OnnxPolicy(export)
    (export / "link.onnx").symlink_to(outside / "other.onnx")
    _edit(export, model="link.onnx")
    with pytest.raises(SidecarError, match=r"names model 'link\.onnx', which resolves outside the export folder"):
        OnnxPolicy(export)
    (export / "alias.onnx").symlink_to(export / "policy.onnx")  # a link that stays inside is fine
    _edit(export, model="alias.onnx")
    assert OnnxPolicy(export).model_path == export / "alias.onnx"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe\x00garbage", "not valid JSON"),
        (b"[1, 2]", "expected a JSON object, got list"),
        (b"[" * 100_000, "nested too deeply"),
    ],
)
def test_a_sidecar_that_is_not_a_json_object_is_a_named_error(tmp_path, text, match):
    write_linear_onnx(tmp_path)
    (tmp_path / "policy.json").write_bytes(text)
    with pytest.raises(SidecarError, match=rf"policy.json: .*{match}.*re-export"):
        OnnxPolicy(tmp_path)


def test_wrong_types_and_missing_keys_are_named_errors(tmp_path):
    write_linear_onnx(tmp_path)
    doc = _edit(tmp_path)
    state = doc["inputs"][0]
    for change, match in [
        ({"inputs": None}, r"missing keys \['inputs'\]"),
        ({"chunk_size": "4"}, "chunk_size: expected an integer >= 1, got '4'"),
        ({"action_dim": 2.0}, "action_dim: expected an integer >= 1, got 2.0"),
        ({"action_names": "xy"}, "action_names: expected a list, got 'xy'"),  # was read as ('x', 'y')
        ({"normalization_in_graph": "false"}, "normalization_in_graph: expected true or false, got 'false'"),
        ({"inputs": 5}, "inputs: expected a list of at least 1 items, got 5"),
        ({"inputs": [{**state, "shape": "16"}]}, r"shape: expected a list of at least 1 items, got '16'"),
        ({"inputs": [{**state, "shape": [1, -6]}]}, r"shape\[1\]: expected an integer >= 1, got -6"),
        ({"inputs": [{**state, "kind": "video"}]}, "kind must be one of"),
        ({"inputs": [{"name": "observation.state", "shape": [1, 6]}]}, r"input: missing keys \['onnx_name'\]"),
        ({"normalization": []}, "normalization: expected an object, got"),
        ({"normalization": {"action": {"mode": "mean_std", "mean": [0.0], "std": "ab"}}}, "std: expected a list"),
        ({"normalization": {"action": {"mode": "min_max", "min": [0] * 3, "max": [1] * 3}}}, "3 values for a last"),
        ({"model": 5}, "model: expected a non-empty string, got 5"),
        ({"model_sha256": "abc"}, "model_sha256: expected 64 lowercase hex digits"),
        ({"noise": {"onnx_name": "noise", "shape": "x"}}, "noise shape: expected a list"),
        ({"task": {"onnx_name": "ids", "length": 4, "table": []}}, "task table: expected an object"),
        ({"task": {"onnx_name": "ids", "length": 4, "table": {"go": ["a"]}}}, r"table 'go'\[0\]: expected an integer"),
        ({"rtc": {"prefix_actions": 1, "prefix_weights": "w"}}, "rtc prefix_actions: expected a non-empty string"),
        ({"noise": {"onnx_name": "state", "shape": [4, 2]}}, "graph input names must be unique"),
        ({"execution": {"mode": "async"}}, r"execution mode: expected one of \['sync', 'ensemble'\], got 'async'"),
        ({"execution": {"mode": "ensemble", "ensemble_coeff": "x"}}, "ensemble_coeff: expected a finite number"),
        ({"execution": {"ensemble_coeff": 0.01}}, r"execution: missing keys \['mode'\]"),
    ]:
        (tmp_path / "policy.json").write_text(json.dumps({**doc, **change}))
        _edit(tmp_path, **{k: None for k, v in change.items() if v is None})
        with pytest.raises(SidecarError, match=match) as info:
            OnnxPolicy(tmp_path)
        assert str(info.value).startswith(str(tmp_path / "policy.json")) and "re-export" in str(info.value)
        assert isinstance(info.value, ConfigError) and isinstance(info.value, CheckpointError)  # callers of old


def test_any_junk_in_any_field_is_a_named_error_or_a_valid_value(tmp_path):
    write_linear_onnx(tmp_path)
    base = _edit(
        tmp_path,
        noise={"onnx_name": "noise", "shape": [4, 2]},
        task={"onnx_name": "ids", "mask_onnx_name": "mask", "length": 3, "pad_id": 0, "table": {"go": [1, 2]}},
        rtc={"prefix_actions": "pa", "prefix_weights": "pw"},
        normalization={"action": {"mode": "quantile", "q01": [-1, -1], "q99": [1, 1]}},
        execution={"mode": "ensemble", "ensemble_coeff": 0.01},
    )
    junk = [None, True, -1, 0, 1.5, float("inf"), "", "x", [], [1, "a"], {}, {"a": 1}, [[1]], "\x00"]
    sections = ["noise", "task", "rtc", "execution"]
    cases = [{**base, key: value} for key in base for value in junk]
    cases += [{**base, "inputs": [{**base["inputs"][0], key: value}]} for key in base["inputs"][0] for value in junk]
    cases += [{**base, s: {**base[s], key: value}} for s in sections for key in base[s] for value in junk]
    refused = 0
    for doc in cases:
        (tmp_path / "policy.json").write_text(json.dumps({k: v for k, v in doc.items()}))
        try:
            load_sidecar(tmp_path, verify=False)
        except PolicyArtifactError:
            refused += 1
    # Nearly all junk is refused; what loads is valid (None for optional sections, any string for names
    # that the graph check then compares, producer {}).
    assert refused > 0.9 * len(cases), (refused, len(cases))
