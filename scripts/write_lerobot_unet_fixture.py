"""Write the LeRobot Diffusion Policy U-Net fixture for tests/models/heads/test_unet_denoiser.py.

Run with a Python that has LeRobot installed (it must not need librobot):

    python scripts/write_lerobot_unet_fixture.py [--out tests/artifacts/lerobot]

Builds LeRobot's ``DiffusionConditionalUnet1d`` at two tiny sizes (FiLM scale+bias and bias only),
with seeded weights (GroupNorm affines randomised too, so a mis-mapped norm layer shows in the
outputs), runs each on seeded inputs and saves, per case ``<case>``, the tensors
``<case>.state.<lerobot key>``, ``<case>.x``, ``<case>.timestep``, ``<case>.global_cond`` and
``<case>.out`` to ``dp_unet_tiny.safetensors``, and the sizes used to ``dp_unet_tiny.json``.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
from pathlib import Path

import torch
from lerobot.configs.types import FeatureType, PolicyFeature
from lerobot.policies.diffusion.configuration_diffusion import DiffusionConfig
from lerobot.policies.diffusion.modeling_diffusion import DiffusionConditionalUnet1d
from safetensors.torch import save_file

# Kept tiny (the file is checked in, < 100 KB). unet_groups 4 and 2 while DP's output block keeps 8 groups;
# one and two halvings of the horizon; kernel 5 and 3.
CASES = {
    "scale": dict(
        down_dims=[8, 8],
        kernel_size=5,
        n_groups=4,
        diffusion_step_embed_dim=8,
        use_film_scale_modulation=True,
        global_cond_dim=10,
        horizon=8,
        action_dim=2,
        batch=3,
        seed=0,
    ),
    "bias": dict(
        down_dims=[8, 8, 8],
        kernel_size=3,
        n_groups=2,
        diffusion_step_embed_dim=6,
        use_film_scale_modulation=False,
        global_cond_dim=5,
        horizon=8,
        action_dim=3,
        batch=2,
        seed=1,
    ),
}


def build(case: dict) -> DiffusionConditionalUnet1d:
    config = DiffusionConfig(
        horizon=case["horizon"],
        n_action_steps=1,
        down_dims=tuple(case["down_dims"]),
        kernel_size=case["kernel_size"],
        n_groups=case["n_groups"],
        diffusion_step_embed_dim=case["diffusion_step_embed_dim"],
        use_film_scale_modulation=case["use_film_scale_modulation"],
        input_features={"observation.state": PolicyFeature(type=FeatureType.STATE, shape=(2,))},
        output_features={"action": PolicyFeature(type=FeatureType.ACTION, shape=(case["action_dim"],))},
    )
    torch.manual_seed(case["seed"])
    unet = DiffusionConditionalUnet1d(config, global_cond_dim=case["global_cond_dim"])
    with torch.no_grad():
        for module in unet.modules():
            if isinstance(module, torch.nn.GroupNorm):
                module.weight.normal_(1.0, 0.2)
                module.bias.normal_(0.0, 0.2)
    return unet.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "tests/artifacts/lerobot")
    args = parser.parse_args()
    torch.set_num_threads(1)
    tensors: dict[str, torch.Tensor] = {}
    for name, case in CASES.items():
        unet = build(case)
        g = torch.Generator().manual_seed(100 + case["seed"])
        b, h, a = case["batch"], case["horizon"], case["action_dim"]
        x = torch.randn(b, h, a, generator=g)
        timestep = torch.randint(0, 100, (b,), generator=g)
        global_cond = torch.randn(b, case["global_cond_dim"], generator=g)
        with torch.no_grad():
            out = unet(x, timestep, global_cond=global_cond)
        for key, value in unet.state_dict().items():
            tensors[f"{name}.state.{key}"] = value.contiguous()
        tensors.update({f"{name}.x": x, f"{name}.timestep": timestep, f"{name}.global_cond": global_cond})
        tensors[f"{name}.out"] = out.contiguous()
    args.out.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(args.out / "dp_unet_tiny.safetensors"))
    meta = {
        "source": "lerobot.policies.diffusion.modeling_diffusion.DiffusionConditionalUnet1d",
        "lerobot": importlib.metadata.version("lerobot"),
        "torch": torch.__version__,
        "writer": "scripts/write_lerobot_unet_fixture.py",
        "cases": CASES,
    }
    (args.out / "dp_unet_tiny.json").write_text(json.dumps(meta, indent=2) + "\n")
    sizes = {k: sum(v.numel() for key, v in tensors.items() if key.startswith(f"{k}.state.")) for k in CASES}
    print(f"wrote {args.out}/dp_unet_tiny.safetensors: parameters per case {sizes}")


if __name__ == "__main__":
    main()
