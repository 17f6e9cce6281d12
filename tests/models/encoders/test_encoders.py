"""State/history/fusion/perceiver/image encoders: shapes, masks that really hide padding,
references (a hand-written LSTM cell), gradients, errors, and the registry entries."""

import pytest
import torch

from librobot.core.errors import ConfigError, SpecError
from librobot.core.registry import get_registry
from librobot.models import create_encoder
from librobot.models.encoders import (
    CrossAttentionFusion,
    FiLMFusion,
    LSTMHistoryEncoder,
    MLPStateEncoder,
    PerceiverResampler,
    ResNetEncoder,
    TransformerHistoryEncoder,
    TransformerStateEncoder,
    ViTEncoder,
    _manifest,
)


def test_mlp_state_encoder_shapes_and_errors():
    enc = MLPStateEncoder(5, output_dim=8, hidden_dims=(16, 16))
    assert enc(torch.randn(3, 5)).shape == (3, 8)
    assert enc(torch.randn(3, 4, 5)).shape == (3, 4, 8)
    assert enc.output_dim == 8
    with pytest.raises(SpecError, match="last dim 5"):
        enc(torch.randn(3, 6))
    with pytest.raises(SpecError, match="NaN"):
        enc(torch.tensor([[0.0, 1.0, float("nan"), 0.0, 0.0]]))
    rebuilt = MLPStateEncoder(**enc.config)
    assert [p.shape for p in rebuilt.parameters()] == [p.shape for p in enc.parameters()]


def test_transformer_state_encoder_tokens_and_mask():
    torch.manual_seed(0)
    enc = TransformerStateEncoder(4, output_dim=8, hidden_dim=16, depth=1, num_heads=2).eval()
    assert enc(torch.randn(2, 4)).shape == (2, 8)
    assert enc(torch.randn(2, 4), return_tokens=True).shape == (2, 4, 8)
    x = torch.randn(2, 3, 4)
    mask = torch.tensor([[True, True, True], [False, True, True]])
    out = enc(x, mask)
    x2 = x.clone()
    x2[1, 0] = 50.0  # a padded step: must not matter
    torch.testing.assert_close(enc(x2, mask), out)
    assert (enc(x2) - enc(x)).abs().max() > 1e-4  # without the mask it does


def lstm_reference(lstm, x):
    """Hand-written LSTM cell (i, f, g, o gates) in float64, one layer."""
    w_ih, w_hh, b = lstm.weight_ih_l0, lstm.weight_hh_l0, lstm.bias_ih_l0 + lstm.bias_hh_l0
    h = torch.zeros(x.shape[0], lstm.hidden_size, dtype=x.dtype)
    c = torch.zeros_like(h)
    for t in range(x.shape[1]):
        i, f, g, o = (x[:, t] @ w_ih.T + h @ w_hh.T + b).chunk(4, -1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
    return h


def test_lstm_history_encoder_matches_manual_cell_and_handles_padding():
    torch.manual_seed(0)
    enc = LSTMHistoryEncoder(3, output_dim=4, hidden_dim=6).double()
    x = torch.randn(2, 5, 3, dtype=torch.float64)
    expected = enc.out(lstm_reference(enc.lstm, x))
    torch.testing.assert_close(enc(x), expected, rtol=1e-10, atol=1e-10)
    # left padding (frames before the episode started): equals encoding the valid suffix alone
    mask = torch.tensor([[True] * 5, [False, False, True, True, True]])
    out = enc(x, mask)
    torch.testing.assert_close(out[1], enc(x[1:, 2:])[0], rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(out[0], enc(x[:1])[0], rtol=1e-10, atol=1e-10)
    seq = enc(x, mask, return_sequence=True)
    assert seq.shape == (2, 5, 4) and float(seq[1, :2].detach().abs().sum()) == 0.0
    # gradients reach every parameter and the input
    xg = x.clone().requires_grad_(True)
    enc(xg, mask).sum().backward()
    assert all(p.grad is not None for p in enc.parameters()) and float(xg.grad[1, :2].abs().sum()) == 0.0
    with pytest.raises(SpecError, match="at least one valid step"):
        enc(x, torch.tensor([[True] * 5, [False] * 5]))
    bi = LSTMHistoryEncoder(3, output_dim=4, hidden_dim=6, num_layers=2, bidirectional=True)
    assert bi(x.float(), mask).shape == (2, 4)


def test_transformer_history_encoder_padding_and_causality():
    torch.manual_seed(0)
    enc = TransformerHistoryEncoder(3, output_dim=4, hidden_dim=16, depth=2, num_heads=2).double().eval()
    x = torch.randn(2, 6, 3, dtype=torch.float64)
    mask = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])  # right padding
    out = enc(x, mask)
    torch.testing.assert_close(out[1], enc(x[1:, :4])[0], rtol=1e-10, atol=1e-10)
    seq = enc(x, return_sequence=True)
    # causal: step 2's output ignores steps 3..5
    x2 = x.clone()
    x2[:, 3:] = 7.0
    torch.testing.assert_close(enc(x2, return_sequence=True)[:, :3], seq[:, :3])
    bidir = TransformerHistoryEncoder(3, output_dim=4, hidden_dim=16, depth=1, num_heads=2, causal=False)
    assert bidir(x.float(), mask).shape == (2, 4)


def test_cross_attention_fusion_and_film():
    torch.manual_seed(0)
    fuse = CrossAttentionFusion(8, 12, output_dim=6, num_heads=2, depth=2).eval()
    ctx = torch.randn(2, 5, 12)
    mask = torch.tensor([[True] * 5, [True, True, True, False, False]])
    q = torch.randn(2, 8)
    out = fuse(q, ctx, mask)
    assert out.shape == (2, 6) and fuse(torch.randn(2, 3, 8), ctx).shape == (2, 3, 6)
    ctx2 = ctx.clone()
    ctx2[1, 3:] = -9.0
    torch.testing.assert_close(fuse(q, ctx2, mask), out)
    film = FiLMFusion(8, 4)
    x, c = torch.randn(2, 3, 8), torch.randn(2, 4)
    torch.testing.assert_close(film(x, c), x)  # identity at initialisation
    film.film.proj.weight.data.normal_()
    gamma, beta = film.film.proj(c).chunk(2, -1)
    torch.testing.assert_close(film(x, c), x * (1 + gamma[:, None]) + beta[:, None])
    with pytest.raises(SpecError, match="context_mask"):
        fuse(q, ctx, mask[:, :3])


def test_perceiver_resampler_shapes_and_mask():
    torch.manual_seed(0)
    per = PerceiverResampler(16, output_dim=8, num_latents=4, depth=2, num_heads=2, max_frames=3).eval()
    x = torch.randn(2, 10, 16)
    assert per(x).shape == (2, 4, 8)
    assert per(torch.randn(2, 3, 10, 16)).shape == (2, 4, 8)
    mask = torch.ones(2, 10, dtype=torch.bool)
    mask[0, 6:] = False
    out = per(x, mask)
    x2 = x.clone()
    x2[0, 6:] = 3.0
    torch.testing.assert_close(per(x2, mask), out)
    torch.testing.assert_close(out[0], per(x[:1, :6])[0], rtol=1e-5, atol=1e-5)
    with pytest.raises(SpecError, match="max_frames"):
        per(torch.randn(1, 4, 10, 16))


def test_resnet_encoder_pools_and_groupnorm_batch_independence():
    torch.manual_seed(0)
    enc = ResNetEncoder(output_dim=8, layers=(1, 1), widths=(16, 32), norm="group")
    imgs = torch.rand(3, 3, 32, 32)
    out = enc(imgs)
    assert out.shape == (3, 8)
    # GroupNorm: a sample's features do not depend on the rest of the batch, even in train mode
    torch.testing.assert_close(enc(imgs[:1]), out[:1], rtol=1e-5, atol=1e-6)
    assert enc(torch.rand(2, 4, 3, 32, 32)).shape == (2, 4, 8)
    tokens = ResNetEncoder(output_dim=8, layers=(1, 1), widths=(16, 32), pool="tokens")(imgs)
    assert tokens.shape == (3, 16, 8)  # 32 → stem /4 → stage /2 = 4x4
    kp = ResNetEncoder(output_dim=8, layers=(1, 1), widths=(16, 32), pool="spatial_softmax", num_keypoints=5)
    assert kp(imgs).shape == (3, 8) and kp.keypoints(torch.randn(3, 32, 4, 4)).abs().max() <= 1.0
    bn = ResNetEncoder(output_dim=8, layers=(1, 1), widths=(16, 32), norm="batch")
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in bn.modules())
    full = create_encoder("resnet18", output_dim=512)
    # ResNet-18 without its classifier has 11,176,512 parameters (the published architecture)
    assert sum(p.numel() for p in full.parameters()) == 11_176_512
    with pytest.raises(ConfigError, match="group for small batches"):
        ResNetEncoder(norm="instance")
    with pytest.raises(SpecError, match="3 channels"):
        enc(torch.rand(2, 1, 32, 32))


def test_vit_encoder_shapes_and_errors():
    torch.manual_seed(0)
    vit = ViTEncoder(image_size=32, patch_size=8, dim=32, depth=2, num_heads=4, output_dim=16)
    assert vit(torch.rand(2, 3, 32, 32)).shape == (2, 16)
    tok = ViTEncoder(image_size=32, patch_size=8, dim=32, depth=1, num_heads=4, pool="tokens")
    assert tok(torch.rand(2, 2, 3, 32, 32)).shape == (2, 2, 16, 32)
    with pytest.raises(SpecError, match="resize first"):
        vit(torch.rand(1, 3, 48, 48))
    with pytest.raises(ConfigError, match="multiple of patch_size"):
        ViTEncoder(image_size=30, patch_size=8)


def test_every_encoder_manifest_entry_resolves():
    for category, entries in (("encoder", _manifest.ENCODERS), ("fusion", _manifest.FUSION)):
        registry = get_registry(category)
        for name, target, aliases, _ in entries:
            obj = registry.get(name)
            assert f"{obj.__module__}:{obj.__qualname__}" == target
            for alias in aliases:
                assert registry.canonical(alias) == name
    assert create_encoder("lstm", input_dim=3, output_dim=5)(torch.randn(2, 4, 3)).shape == (2, 5)
    assert get_registry("fusion").create("film", feature_dim=4, cond_dim=2).output_dim == 4
    with pytest.raises(ConfigError, match="hidden_dims"):
        create_encoder("mlp_state", state_dim=3, hidden_dim=5)
