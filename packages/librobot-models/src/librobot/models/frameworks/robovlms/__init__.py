"""RoboVLMs-style framework (Li et al. 2024; seed 003): the VLM encodes every frame of an
observation history into one feature, a history module fuses the steps, and an FC, LSTM or
GPT-style decoder predicts the action chunk, in a continuous or a discrete action space."""

REGISTRY = {
    "name": "robovlms",
    "target": "model:RoboVLMsPolicy",
    "aliases": ["robovlms_style", "robo_vlms"],
    "doc": "RoboVLMs-style: per-frame VLM [ACT] features + LSTM/transformer history + FC/LSTM/GPT decoder",
}
