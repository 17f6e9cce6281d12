"""Exported task ids are the ids of the text the policy gives its backbone: OpenVLA-style wraps the
instruction in OpenVLA's prompt, so the export's table and ``TaskTokenizer`` must too (the ONNX
parity of the whole path is in test_export.py)."""

from types import SimpleNamespace

import pytest
from test_export_helpers import TINY_VLM, build

from librobot.serve.export.tasks import TaskTokenizer, build_table, prompt_ids, task_prompt

pytestmark = pytest.mark.torch

TASK = "Open The Drawer"
OPENVLA = "In: What action should the robot take to open the drawer?\nOut:"


def spec(views=1, length=256):
    return SimpleNamespace(task={"length": length, "pad_id": 0}, producer={"prompt_views": views}, inputs=[])


def test_task_ids_come_from_the_policys_prompt():
    from librobot.models import create_vla, create_vlm

    # room for the whole prompt: the byte-level tiny VLM keeps only max_text_tokens bytes of it
    vlm = create_vlm("librobot-tiny-vlm", **{**TINY_VLM, "max_text_tokens": 128})
    openvla, act = create_vla("openvla", vlm=vlm, action_dim=3), build("act")
    assert task_prompt(openvla, TASK) == OPENVLA and task_prompt(act, TASK) == TASK
    wrapped = prompt_ids(vlm, OPENVLA, 1)
    assert wrapped != prompt_ids(vlm, TASK, 1)
    assert TaskTokenizer(openvla, spec()).ids(TASK) == wrapped
    assert TaskTokenizer(vlm, spec()).ids(TASK) == prompt_ids(vlm, TASK, 1)  # a bare backbone: as given
    table, _ = build_table(vlm, [TASK], 1, prompt=lambda t: task_prompt(openvla, t))
    assert table == {TASK: wrapped}
