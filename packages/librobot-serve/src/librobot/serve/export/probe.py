"""Finding out, by running the policy, what its exported graph must take.

- Which cameras and image size: the policy's ``config.cameras`` (or the caller's), the backbone's
  native input size unless told otherwise (other sizes are resized inside the backbone, in-graph).
- Whether the instruction is read, and how: every call of the backbone's ``tokenize`` hook is
  recorded; a policy whose output changes with the text without that hook cannot be exported.
- Whether the initial noise matters (two generator seeds give different chunks), and whether the
  sampler draws *more* randomness after it (same noise, different generators, different chunks:
  DDPM's per-step noise, DDIM with eta > 0, EDM churn) — which an exported graph cannot reproduce.
- Whether the framework takes real-time-chunking guidance (``sample_actions(..., guidance=)``).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import torch

from librobot.core.errors import SpecError
from librobot.serve.export.errors import ExportError
from librobot.serve.export.layout import GraphLayout, TaskInputs
from librobot.serve.export.tasks import build_table, pad_id, task_prompt


def native_image_size(vlm: Any) -> tuple[int, int] | None:
    size = getattr(vlm, "image_size", None)
    if size is None:
        size = getattr(getattr(vlm, "cfg", None), "image_size", None)
    if isinstance(size, int):
        return (size, size)
    return (int(size[0]), int(size[1])) if size is not None else None


def choose_cameras(model: Any, cameras: Sequence[str] | None) -> tuple[str, ...]:
    configured = model.config.cameras
    if configured is not None:
        if cameras is not None and list(cameras) != list(configured):
            raise ExportError(
                f"the policy was trained on cameras {list(configured)}; --cameras {list(cameras)} would change what it reads"
            )
        return tuple(configured)
    return tuple(cameras) if cameras is not None else ("front",)


def _sample(model: Any, images: Any, text: str, state: Any, seed: int, noise: Any = None) -> torch.Tensor:
    generator = torch.Generator(device=model.device).manual_seed(seed)
    with torch.no_grad():
        inputs = model.prepare(images, [text], state)
        return model.sample_actions(inputs, generator, noise)


def probe(
    model: Any,
    framework: str,
    *,
    tasks: Sequence[str],
    cameras: Sequence[str] | None = None,
    image_size: tuple[int, int] | None = None,
    history: int = 1,
    max_task_tokens: int | None = None,
    rtc: bool = True,
) -> GraphLayout:
    """The ``GraphLayout`` of ``model`` (eval mode, CPU) for the given export options."""
    c = model.config
    cams = choose_cameras(model, cameras)
    size = tuple(image_size) if image_size is not None else native_image_size(model.vlm)
    if cams and size is None:
        raise ExportError(f"{framework}: cannot tell the backbone's image size; pass --image-size H W")
    gen = torch.Generator().manual_seed(0)
    images = {cam: torch.rand(1, history, 3, *size, generator=gen) for cam in cams} or None
    state = torch.randn(1, history, c.state_dim, generator=gen) if c.state_dim else None

    # --- the instruction: which prompts does the backbone build?
    vlm = model.vlm
    calls: list[tuple[int, int]] = []
    hook = getattr(vlm, "tokenize", None)
    if hook is not None:

        def recording(texts: Any, num_views: int = 0) -> Any:
            calls.append((len(texts), int(num_views)))
            return hook(texts, num_views)

        vlm.tokenize = recording
    try:
        first = _sample(model, images, "pick up the red block", state, 0)
    finally:
        if hook is not None:
            del vlm.tokenize
    # the hook being called is proof enough; without it, a text-dependent output is
    reads_text = bool(calls) or not torch.equal(first, _sample(model, images, "open the top drawer", state, 0))
    task = None
    if reads_text:
        if not calls:
            raise ExportError(
                f"{framework}: the output depends on the instruction, but the backbone {type(vlm).__name__} does not "
                "build its prompt through a `tokenize(texts, num_views)` hook, so the text cannot be turned into "
                "graph inputs; export needs a backbone with that hook (the built-in tiny VLM and the transformers backbones have it)"
            )
        views = sorted({v for _, v in calls})
        if len(views) > 1:
            raise ExportError(
                f"{framework}: the backbone is asked for prompts with {views} images in one prediction; one "
                "task input can hold only one prompt layout"
            )
        table, length = build_table(vlm, tasks, views[0], max_task_tokens, lambda t: task_prompt(model, t))
        task = TaskInputs(length=length, pad_id=pad_id(vlm, views[0]), num_views=views[0], table=table)

    # --- randomness: none, the initial noise only, or more
    text = "pick up the red block"
    stochastic = not torch.equal(first, _sample(model, images, text, state, 1))
    if stochastic:
        shape = (1, c.horizon, c.action_dim)
        noise = torch.randn(shape, generator=gen)
        try:
            a = _sample(model, images, text, state, 0, noise)
            b = _sample(model, images, text, state, 1, noise)
        except SpecError as exc:
            raise ExportError(f"{framework}: its sampling is random but it takes no noise input ({exc})") from exc
        if not torch.equal(a, b):
            head = getattr(getattr(model, "head", None), "config", None)
            how = f" (head sampler {head.sampler!r})" if head is not None and hasattr(head, "sampler") else ""
            raise ExportError(
                f"{framework}: its sampler draws fresh noise after the initial draw{how}, e.g. DDPM's per-step noise, "
                "DDIM with eta > 0 or EDM churn; an exported graph takes only the initial noise as an input. Export "
                "a policy with a deterministic sampler (DDIM with eta=0, EDM without churn, or flow matching)"
            )
    guided = stochastic and rtc and "guidance" in inspect.signature(model.sample_actions).parameters
    return GraphLayout(
        framework=framework,
        action_dim=c.action_dim,
        horizon=c.horizon,
        state_dim=c.state_dim,
        history=history,
        cameras=cams,
        image_size=tuple(size) if size is not None else (0, 0),
        noise=stochastic,
        task=task,
        rtc=guided,
        execution=dict(getattr(model, "execution", None) or {}),
        state_parts=tuple((str(k), int(w)) for k, w in getattr(c, "state_parts", None) or ()),
    )
