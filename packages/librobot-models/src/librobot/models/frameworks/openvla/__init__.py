"""OpenVLA-style framework: actions as 256-bin tokens predicted by the language model (model.py),
and the OpenVLA-OFT variant: parallel decoding of the whole chunk with L1 regression (oft.py)."""

REGISTRY = [
    {
        "name": "openvla",
        "target": "model:OpenVLAStyle",
        "aliases": ["openvla_style"],
        "doc": "OpenVLA-style: 256-bin action tokens on the tokenizer's last ids, OpenVLA prompt + EOS, greedy KV-cached decoding",
    },
    {
        "name": "openvla-oft",
        "target": "oft:OpenVLAOFT",
        "aliases": ["oft", "openvla_oft"],
        "doc": "OpenVLA-OFT: empty action embeddings after the prompt, one VLM pass, MLP + L1 regression",
    },
]
