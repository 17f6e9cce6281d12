"""Our batched torch preprocessing equals the Hugging Face ``*ImageProcessorPil`` processors (pixel
values, Qwen patch layout and grids), and the number of image tokens matches the vision tower."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from librobot.models.vlm.preprocess import qwen_patchify

from .conftest import HF_TINY


@pytest.mark.parametrize("name", HF_TINY)
def test_pixels_match_the_hf_image_processor(build_tiny, name):
    vlm = build_tiny(name)
    h, w = vlm.image_size
    rng = np.random.default_rng(3)
    arrays = [rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8) for _ in range(2)]
    reference = vlm.image_processor()(images=[Image.fromarray(a) for a in arrays], return_tensors="pt")
    ours = vlm.preprocess([torch.stack([torch.from_numpy(a).permute(2, 0, 1) for a in arrays]).float() / 255])
    if name.startswith("qwen"):
        vc = vlm.hf.config.vision_config
        ours, grid = qwen_patchify(ours, vc.patch_size, vc.spatial_merge_size, vc.temporal_patch_size)
        assert torch.equal(grid, reference["image_grid_thw"])
        assert int(grid[0].prod()) // vc.spatial_merge_size**2 == vlm.tokens_per_view()
    assert ours.shape == reference["pixel_values"].shape
    assert torch.allclose(ours, reference["pixel_values"].float(), atol=1e-5)


@pytest.mark.parametrize("name", HF_TINY)
def test_image_tokens_per_view_match_the_tower(build_tiny, name):
    vlm = build_tiny(name)
    pixels = vlm.preprocess([torch.rand(1, 3, *vlm.image_size)])
    with torch.no_grad():
        feats, _ = vlm._image_features(pixels)
    assert feats.shape == (1, vlm.tokens_per_view(), vlm.get_embedding_dim())
    assert vlm.tokenize(["x"], 1)[0].eq(vlm.image_token_id).sum() >= 1


def test_resize_is_applied_for_other_input_sizes(build_tiny):
    vlm = build_tiny("paligemma-tiny")
    big = torch.rand(1, 3, 80, 48)
    assert vlm.preprocess([big]).shape == (1, 3, *vlm.image_size)
