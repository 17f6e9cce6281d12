"""ACT (Zhao et al. 2023): a transformer CVAE that predicts action chunks from image features and
state, with temporal ensembling of overlapping chunks at inference (in librobot.serve's runtime)."""

REGISTRY = {
    "name": "act",
    "target": "model:ACTPolicy",
    "aliases": ["act_style", "aloha"],
    "doc": "ACT: CVAE transformer over VLM image features + state, chunked L1 + KL, temporal ensembling",
}
