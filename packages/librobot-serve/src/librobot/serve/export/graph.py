"""The module that is exported: a framework's whole inference path as a function of tensors.

``PolicyGraph(model, layout)(*inputs)`` does what ``model.predict_action`` does — normalise the
state (the framework's in-graph Normalizer), run the backbone (image float conversion, resizing
and normalisation happen inside it), the action head with its whole sampling loop unrolled, and
un-normalise — with three differences that make it a graph:

- the instruction arrives as prompt ids (``task_ids``/``task_mask``); tokenisation is Python and
  stays outside. While the graph runs, the backbone's ``tokenize(texts, num_views)`` hook returns
  those ids (``pretokenized``), so the backbone's own embedding and prompt handling are traced;
- the sampler's initial noise is an input (``noise``), never drawn inside;
- the batch is 1 (one observation per control step), so no per-sample Python lists vary in size.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from librobot.core import batch as B
from librobot.core.errors import SpecError
from librobot.serve.export.layout import GraphLayout, onnx_name_for_camera
from librobot.serve.export.tasks import task_prompt

PLACEHOLDER = "<exported task>"  # the text the framework sees; the ids come from the graph inputs


def left_pad(ids: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Right-padded rows (the sidecar's layout) → left-padded rows (the backbones' layout), in-graph:
    row r, position j reads position (j + n_r) mod L, n_r = real ids of row r."""
    length = ids.shape[1]
    real = mask.to(torch.long).sum(dim=1, keepdim=True)
    index = (torch.arange(length, device=ids.device).unsqueeze(0) + real) % length
    return torch.gather(ids, 1, index), torch.gather(mask, 1, index).to(torch.bool)


@contextmanager
def pretokenized(vlm: nn.Module, ids: Tensor, mask: Tensor, num_views: int, text: str = PLACEHOLDER) -> Iterator[None]:
    """Make ``vlm.tokenize`` return ``ids``/``mask`` (one row, repeated for every text it is given).

    The framework is given ``PLACEHOLDER`` and passes ``text`` on (its prompt of the placeholder,
    ``task_prompt``); any other text, or a prompt built for another image count, would mean the
    ids do not fit, so both are refused."""

    def tokenize(texts: Any, num_views_called: int = 0) -> tuple[Tensor, Tensor]:
        if any(t != text for t in texts):
            raise SpecError("the exported graph tokenises only its own task input; the framework passed other text")
        if num_views_called != num_views:
            raise SpecError(
                f"the prompt ids were built for {num_views} image(s) but the backbone is asked for {num_views_called}"
            )
        n = len(texts)
        return ids.expand(n, -1), mask.expand(n, -1)

    vlm.tokenize = tokenize  # an instance attribute shadows the method for the duration
    try:
        yield
    finally:
        del vlm.tokenize


class PolicyGraph(nn.Module):
    """One observation → one action chunk [1, H, A] in robot units; inputs in ``layout.input_names()`` order."""

    def __init__(self, model: nn.Module, layout: GraphLayout) -> None:
        super().__init__()
        self.model = model
        self.layout = layout
        self.names = layout.input_names()

    def forward(self, *inputs: Tensor) -> Tensor:
        values = dict(zip(self.names, inputs, strict=True))
        lay, model = self.layout, self.model
        images = {cam: values[onnx_name_for_camera(cam)] for cam in lay.cameras} or None
        state = values.get("state")
        noise = values.get("noise")
        options: dict[str, Any] = {}
        if lay.rtc:
            options["guidance"] = rtc_guidance(model, values["prefix_actions"], values["prefix_weights"])
        text = [PLACEHOLDER]
        if lay.task is None:
            inputs = model.prepare(images, text, state)
            actions = model.sample_actions(inputs, None, noise, **options)
        else:
            ids, mask = left_pad(values["task_ids"], values["task_mask"])
            with pretokenized(model.vlm, ids, mask, lay.task.num_views, task_prompt(model, PLACEHOLDER)):
                inputs = model.prepare(images, text, state)
                actions = model.sample_actions(inputs, None, noise, **options)
        return model.normalizer.unnormalize(B.ACTION, actions).to(torch.float32)


def rtc_guidance(model: nn.Module, prefix_actions: Tensor, prefix_weights: Tensor) -> Any:
    """Real-time-chunking guidance for a framework's ``sample_actions(..., guidance=)``: the prefix
    (robot units) is normalised like the actions, then ``librobot.serve.rtc.guided_velocity``
    (identity Jacobian: pure tensor arithmetic, so it stays inside the graph)."""
    from librobot.serve.rtc import guided_velocity

    target = model.normalizer.normalize(B.ACTION, prefix_actions)

    def guide(velocity: Tensor, x_t: Tensor, t: float) -> Tensor:
        return guided_velocity(velocity, x_t, t, target.to(x_t.dtype), prefix_weights.to(x_t.dtype))

    return guide


def random_inputs(layout: GraphLayout, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Fresh random observation inputs (no task, noise or prefix): states ~ N(0, 1), images ~ U[0, 1]."""
    shapes = layout.input_shapes()
    out: dict[str, np.ndarray] = {}
    if layout.state_dim:
        out["state"] = rng.standard_normal(shapes["state"]).astype(np.float32)
    for cam in layout.cameras:
        name = onnx_name_for_camera(cam)
        out[name] = rng.random(shapes[name], dtype=np.float32)
    return out


def graph_inputs(
    layout: GraphLayout,
    observation: dict[str, np.ndarray],
    task: str | None,
    noise: np.ndarray | None,
    prefix: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """Every graph input by name: the observation, the task's ids, the noise and the RTC prefix."""
    feeds = dict(observation)
    if layout.task is not None:
        if task not in layout.task.table:
            raise SpecError(f"task {task!r} is not in the export's task table {sorted(layout.task.table)}")
        row = layout.task.table[task]
        ids = np.full((1, layout.task.length), layout.task.pad_id, np.int64)
        ids[0, : len(row)] = row
        mask = np.zeros((1, layout.task.length), np.int64)
        mask[0, : len(row)] = 1
        feeds["task_ids"], feeds["task_mask"] = ids, mask
    if layout.noise:
        assert noise is not None
        feeds["noise"] = noise.astype(np.float32).reshape(1, layout.horizon, layout.action_dim)
    if layout.rtc:
        pa = np.zeros((1, layout.horizon, layout.action_dim), np.float32) if prefix is None else prefix[0]
        pw = np.zeros((1, layout.horizon), np.float32) if prefix is None else prefix[1]
        feeds["prefix_actions"], feeds["prefix_weights"] = pa.astype(np.float32), pw.astype(np.float32)
    return feeds


def torch_reference(
    model: nn.Module,
    layout: GraphLayout,
    feeds: dict[str, np.ndarray],
    task: str | None,
) -> np.ndarray:
    """What the torch policy predicts for the same inputs: ``model.predict_action`` with the real
    tokenizer and the same noise (and RTC guidance) — the reference every export is checked against."""
    images = {cam: torch.from_numpy(feeds[onnx_name_for_camera(cam)]) for cam in layout.cameras} or None
    state = torch.from_numpy(feeds["state"]) if layout.state_dim else None
    kwargs: dict[str, Any] = {}
    if layout.noise:
        kwargs["noise"] = torch.from_numpy(feeds["noise"])
    if layout.rtc:
        guide = rtc_guidance(
            model, torch.from_numpy(feeds["prefix_actions"]), torch.from_numpy(feeds["prefix_weights"])
        )
        kwargs["guidance"] = guide
    with torch.no_grad():
        out = model.predict_action(images, [task if task is not None else ""], state, **kwargs)
    return out.float().cpu().numpy()
