"""LeRobot's side of benchmarks/vs_lerobot_speed.py: run with LeRobot's own interpreter
(``../shared/peers/lerobot/setup.sh`` installs it in /tmp/peer-lerobot/venv); imports no librobot.

    /tmp/peer-lerobot/venv/bin/python benchmarks/peers/lerobot_speed.py --section act|diffusion|pi0 \\
        [--pi0-dtype float32|bfloat16] [--repeats N]

Random weights (nothing can be downloaded), fixed seeds, LeRobot's own configs (ACT defaults;
Diffusion Policy's PushT recipe; pi0 with PaliGemma gemma_2b + gemma_300m expert). Prints one JSON
object on its last line.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HOME", "/tmp/peer-lerobot/hf_home")

import torch


def timed(fn, repeats: int, warmup: int) -> dict:
    for _ in range(warmup):
        fn()
    wall = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        wall.append((time.perf_counter() - t0) * 1e3)
    return {"median_ms": round(statistics.median(wall), 2), "min_ms": round(min(wall), 2), "repeats": repeats}


def train_step(policy, optimizer, batch, clip):
    def step():
        loss, _ = policy.forward(batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), clip)
        optimizer.step()
        optimizer.zero_grad()

    return step


def params(module) -> int:
    return sum(p.numel() for p in module.parameters())


def act(args) -> dict:
    from lerobot.configs import FeatureType, PolicyFeature
    from lerobot.policies.act.configuration_act import ACTConfig
    from lerobot.policies.act.modeling_act import ACTPolicy

    torch.manual_seed(0)
    cfg = ACTConfig(
        input_features={
            "observation.state": PolicyFeature(type=FeatureType.STATE, shape=(6,)),
            "observation.images.cam": PolicyFeature(type=FeatureType.VISUAL, shape=(3, 96, 96)),
        },
        output_features={"action": PolicyFeature(type=FeatureType.ACTION, shape=(6,))},
        pretrained_backbone_weights=None,
        device="cpu",
        push_to_hub=False,
    )
    policy = ACTPolicy(cfg)
    preset = cfg.get_optimizer_preset()
    optimizer = preset.build(policy.get_optim_params())
    g = torch.Generator().manual_seed(0)
    b, h = args.batch_size, cfg.chunk_size
    batch = {
        "observation.state": torch.randn(b, 6, generator=g),
        "observation.images.cam": torch.rand(b, 3, 96, 96, generator=g),
        "action": torch.randn(b, h, 6, generator=g),
        "action_is_pad": torch.zeros(b, h, dtype=torch.bool),
    }
    policy.train()
    out = {"params": params(policy), "chunk": h}
    out["train_step"] = timed(train_step(policy, optimizer, batch, preset.grad_clip_norm), args.repeats, 2)
    policy.eval()
    obs = {
        "observation.state": torch.randn(1, 6, generator=g),
        "observation.images.cam": torch.rand(1, 3, 96, 96, generator=g),
    }
    with torch.no_grad():
        out["chunk_b1"] = timed(lambda: policy.predict_action_chunk(obs), 3 * args.repeats, 3)
    return out


def diffusion(args) -> dict:
    from lerobot.configs import FeatureType, PolicyFeature
    from lerobot.policies.diffusion.configuration_diffusion import DiffusionConfig
    from lerobot.policies.diffusion.modeling_diffusion import DiffusionPolicy

    torch.manual_seed(0)
    cfg = DiffusionConfig(  # the PushT recipe without a pretrained backbone, DDIM with 10 steps
        input_features={
            "observation.state": PolicyFeature(type=FeatureType.STATE, shape=(2,)),
            "observation.image": PolicyFeature(type=FeatureType.VISUAL, shape=(3, 96, 96)),
        },
        output_features={"action": PolicyFeature(type=FeatureType.ACTION, shape=(2,))},
        n_obs_steps=2,
        horizon=16,
        n_action_steps=8,
        crop_shape=(84, 84),
        pretrained_backbone_weights=None,
        use_group_norm=True,
        spatial_softmax_num_keypoints=32,
        down_dims=(512, 1024, 2048),
        kernel_size=5,
        n_groups=8,
        diffusion_step_embed_dim=128,
        use_film_scale_modulation=True,
        noise_scheduler_type="DDIM",
        num_train_timesteps=100,
        num_inference_steps=10,
        device="cpu",
        push_to_hub=False,
    )
    policy = DiffusionPolicy(cfg)
    preset = cfg.get_optimizer_preset()
    optimizer = preset.build(policy.get_optim_params())
    g = torch.Generator().manual_seed(0)
    b = args.batch_size
    batch = {
        "observation.state": torch.randn(b, 2, 2, generator=g),
        "observation.image": torch.rand(b, 2, 3, 96, 96, generator=g),
        "action": torch.randn(b, 16, 2, generator=g).clamp(-1, 1),
        "action_is_pad": torch.zeros(b, 16, dtype=torch.bool),
    }
    policy.train()
    out = {"params": params(policy), "unet_params": params(policy.diffusion.unet), "horizon": 16, "steps": 10}
    out["train_step"] = timed(train_step(policy, optimizer, batch, preset.grad_clip_norm), args.repeats, 2)
    policy.eval()
    obs = {
        "observation.state": torch.randn(1, 2, 2, generator=g),
        "observation.image": torch.rand(1, 2, 3, 96, 96, generator=g),
    }
    with torch.no_grad():
        out["chunk_b1"] = timed(lambda: policy.predict_action_chunk(obs), 2 * args.repeats, 2)
    return out


def pi0(args) -> dict:
    from lerobot.configs import FeatureType, PolicyFeature
    from lerobot.policies.pi0.configuration_pi0 import PI0Config
    from lerobot.policies.pi0.modeling_pi0 import PI0Policy

    torch.manual_seed(0)
    cfg = PI0Config(
        paligemma_variant="gemma_2b",
        action_expert_variant="gemma_300m",
        dtype=args.pi0_dtype,
        device="cpu",
        push_to_hub=False,
        input_features={
            "observation.state": PolicyFeature(type=FeatureType.STATE, shape=(6,)),
            "observation.images.cam": PolicyFeature(type=FeatureType.VISUAL, shape=(3, 224, 224)),
        },
        output_features={"action": PolicyFeature(type=FeatureType.ACTION, shape=(6,))},
    )
    policy = PI0Policy(cfg).eval()
    g = torch.Generator().manual_seed(0)
    length = cfg.tokenizer_max_length
    obs = {  # no tokenizer offline: random token ids of the tokenizer's padded length
        "observation.state": torch.randn(1, 6, generator=g),
        "observation.images.cam": torch.rand(1, 3, 224, 224, generator=g),
        "observation.language.tokens": torch.randint(0, 257152, (1, length), generator=g),
        "observation.language.attention_mask": torch.ones(1, length, dtype=torch.bool),
    }
    out = {
        "params": params(policy),
        "dtype": args.pi0_dtype,
        "prefix_tokens": 256 + length,
        "chunk": cfg.chunk_size,
        "steps": cfg.num_inference_steps,
    }
    with torch.no_grad():
        out["chunk_b1"] = timed(lambda: policy.predict_action_chunk(obs), args.repeats, 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--section", choices=("act", "diffusion", "pi0"), required=True)
    parser.add_argument("--pi0-dtype", choices=("float32", "bfloat16"), default="float32")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    import importlib.metadata as md

    result = {"side": "lerobot", "version": md.version("lerobot"), "threads": torch.get_num_threads()}
    result.update({"act": act, "diffusion": diffusion, "pi0": pi0}[args.section](args))
    result["maxrss_gb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    sys.exit(main())
