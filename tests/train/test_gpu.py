"""CUDA only (skips itself without a GPU): mixed precision on the GPU, and a SIGTERM-stop + resume
that continues the same run."""

import pytest
import torch
from _train_testlib import SendSignalAt, final_tensors, tiny_config, train_losses

from librobot.train.run import train_from_config

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_cuda_mixed_precision_trains_and_resumes(tmp_path, precision):
    def config(run_dir):
        return tiny_config(
            run_dir,
            train={
                "max_steps": 24,
                "device": "cuda",
                "precision": precision,
                "max_grad_norm": 1.0,
                "deterministic": True,
            },
            optimizer={"lr": 3e-3},
            ema={"enabled": True, "max_decay": 0.9},
            logging={"log_every_n_steps": 4},
        )

    train_from_config(config(tmp_path / "full"), configure_logs=False)
    losses = [loss for _, loss in train_losses(tmp_path / "full")]
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0]
    stopped = train_from_config(config(tmp_path / "cut"), callbacks=[SendSignalAt(9)], configure_logs=False)
    assert stopped.step == 9
    train_from_config(config(tmp_path / "cut"), resume="auto", configure_logs=False)
    full, cut = final_tensors(tmp_path / "full"), final_tensors(tmp_path / "cut")
    for key in full:
        torch.testing.assert_close(cut[key], full[key], rtol=1e-5, atol=1e-6)
