"""The attention's SDPA path against its explicit path (values, probabilities, gradients), backend choice."""
import pytest
import torch

from fdclip_mm.models.backbones.attention import Attention, flex_pays, sdpa_pays
from fdclip_mm.models.backbones.rel_pos_bias import RelativePositionBias, select_token_bias

DIMS, HEADS, GRID = 32, 4, (3, 4)
TOKENS = 1 + GRID[0] * GRID[1]

pytestmark = pytest.mark.usefixtures('one_thread')


def randomized(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    return module


def attention_pair(**kwargs):
    """Two attentions with equal weights: one forced to SDPA, one to explicit products."""
    sdpa = randomized(Attention(DIMS, HEADS, backend='sdpa', **kwargs))
    explicit = Attention(DIMS, HEADS, backend='explicit', **kwargs)
    explicit.load_state_dict(sdpa.state_dict())
    return sdpa, explicit


def rpb(batch_ids=None) -> torch.Tensor:
    table = randomized(RelativePositionBias(GRID, HEADS), seed=1)
    bias = table(GRID)
    return bias if batch_ids is None else select_token_bias(bias, batch_ids)


def run(attn: Attention, x: torch.Tensor, bias) -> tuple:
    """Output and the gradients of a fixed random loss w.r.t. input, bias and every parameter."""
    x = x.clone().requires_grad_(True)
    bias = None if bias is None else bias.detach().clone().requires_grad_(True)
    out = attn(x, bias)
    out.mul(torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
    grads = [x.grad] + ([bias.grad] if bias is not None else []) + [p.grad for p in attn.parameters()]
    return out, grads


@pytest.mark.parametrize('bias_kind', ['none', 'shared', 'per_sample'])
def test_sdpa_and_explicit_paths_agree_in_values_and_gradients(bias_kind):
    torch.manual_seed(0)
    kept = TOKENS - 5 if bias_kind == 'per_sample' else TOKENS  # masked input: each sample keeps its own tokens
    x = torch.randn(3, kept, DIMS)
    ids = torch.stack([torch.randperm(TOKENS)[:kept] for _ in range(3)]) if bias_kind == 'per_sample' else None
    bias = None if bias_kind == 'none' else rpb(ids)
    sdpa, explicit = attention_pair()
    out_fast, grads_fast = run(sdpa, x, bias)
    out_slow, grads_slow = run(explicit, x, bias)
    assert out_fast.shape == (3, kept, DIMS)
    torch.testing.assert_close(out_fast, out_slow, atol=1e-5, rtol=1e-5)
    assert len(grads_fast) == len(grads_slow)
    for fast, slow in zip(grads_fast, grads_slow):
        assert fast is not None and fast.abs().sum() > 0
        torch.testing.assert_close(fast, slow, atol=1e-5, rtol=1e-4)


def test_probabilities_are_the_softmax_of_biased_logits():
    torch.manual_seed(0)
    attn = randomized(Attention(DIMS, HEADS, qv_bias=False)).eval()
    x, bias = torch.randn(2, TOKENS, DIMS), rpb()
    out, probs = attn(x, bias, return_attn=True)
    q, k, v = attn.qkv(x).view(2, TOKENS, 3, HEADS, DIMS // HEADS).permute(2, 0, 3, 1, 4)
    expected = ((q @ k.transpose(-2, -1)) / (DIMS // HEADS)**0.5 + bias).softmax(-1)
    torch.testing.assert_close(probs, expected)
    torch.testing.assert_close(out, attn.proj((expected @ v).transpose(1, 2).flatten(2)))
    torch.testing.assert_close(out, attn(x, bias), atol=1e-5, rtol=1e-5)


def test_paths_agree_under_bf16_autocast():
    torch.manual_seed(0)
    x, bias = torch.randn(2, TOKENS, DIMS), rpb()
    sdpa, explicit = attention_pair()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out_fast, grads_fast = run(sdpa, x, bias)
        out_slow, grads_slow = run(explicit, x, bias)
    reference, _ = run(explicit, x, bias)  # float32
    assert out_fast.dtype == out_slow.dtype == torch.bfloat16
    # both are bf16 approximations of the same float32 result
    for out in (out_fast, out_slow):
        torch.testing.assert_close(out.float(), reference, atol=0.1, rtol=0.05)
    torch.testing.assert_close(grads_fast[0].float(), grads_slow[0].float(), atol=0.1, rtol=0.05)


def test_auto_backend_takes_explicit_products_for_a_biased_training_step_on_cpu(monkeypatch):
    q = torch.randn(2, HEADS, TOKENS, 8, requires_grad=True)
    bias = torch.randn(1, HEADS, TOKENS, TOKENS)
    assert not sdpa_pays(q, bias)
    assert sdpa_pays(q, None)
    assert sdpa_pays(q.detach(), bias)
    with torch.no_grad():
        assert sdpa_pays(q, bias)
    assert sdpa_pays(torch.empty(2, HEADS, TOKENS, 8, device='meta', requires_grad=True), bias)

    calls = []
    real_sdpa = torch.nn.functional.scaled_dot_product_attention
    monkeypatch.setattr(torch.nn.functional, 'scaled_dot_product_attention',
                        lambda *a, **k: calls.append(1) or real_sdpa(*a, **k))
    attn = Attention(DIMS, HEADS)
    x = torch.randn(2, TOKENS, DIMS, requires_grad=True)
    attn(x, rpb())
    assert calls == []
    attn(x, None)
    with torch.no_grad():
        attn(x, rpb())
    assert len(calls) == 2


def test_unknown_backend():
    with pytest.raises(ValueError, match='backend'):
        Attention(DIMS, HEADS, backend='flash')


@pytest.mark.slow
@pytest.mark.parametrize('bias_kind', ['none', 'shared', 'per_sample'])
def test_flex_attention_gives_the_explicit_values(bias_kind):
    """FlexAttention (compiled, inference: torch 2.14 has no FlexAttention backward on CPU) with the bias as a
    score_mod: class-token rows and columns, and each masked sample's own kept tokens."""
    torch.manual_seed(0)
    kept = TOKENS - 5 if bias_kind == 'per_sample' else TOKENS
    x = torch.randn(3, kept, DIMS)
    ids = torch.stack([torch.randperm(TOKENS)[:kept] for _ in range(3)]) if bias_kind == 'per_sample' else None
    bias = None if bias_kind == 'none' else rpb(ids)
    flex = randomized(Attention(DIMS, HEADS, backend='flex')).eval()
    explicit = Attention(DIMS, HEADS, backend='explicit').eval()
    explicit.load_state_dict(flex.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(flex(x, bias), explicit(x, bias), atol=1e-5, rtol=1e-5)


@pytest.mark.slow
@pytest.mark.skipif(not torch.cuda.is_available(), reason='FlexAttention has no backward on CPU (torch 2.14)')
@pytest.mark.parametrize('bias_kind', ['shared', 'per_sample'])
def test_flex_attention_gradients_reach_the_bias_on_cuda(bias_kind):
    """Run by benchmarks/gpu_check.sh: values and gradients (input, bias, parameters) of the flex path against
    the explicit one, in float32 on the GPU."""
    torch.manual_seed(0)
    kept = TOKENS - 5 if bias_kind == 'per_sample' else TOKENS
    x = torch.randn(3, kept, DIMS, device='cuda')
    ids = torch.stack([torch.randperm(TOKENS)[:kept] for _ in range(3)]) if bias_kind == 'per_sample' else None
    bias = rpb(ids).cuda()
    flex = randomized(Attention(DIMS, HEADS, backend='flex')).cuda()
    explicit = Attention(DIMS, HEADS, backend='explicit').cuda()
    explicit.load_state_dict(flex.state_dict())
    out_flex, grads_flex = run(flex, x, bias)
    out_explicit, grads_explicit = run(explicit, x, bias)
    torch.testing.assert_close(out_flex, out_explicit, atol=1e-4, rtol=1e-4)
    for fast, slow in zip(grads_flex, grads_explicit):
        assert fast is not None and fast.abs().sum() > 0
        torch.testing.assert_close(fast, slow, atol=1e-4, rtol=1e-3)


def test_auto_backend_takes_flex_for_biased_attention_on_cuda_only():
    cuda = type('FakeCudaTensor', (), dict(is_cuda=True))()
    cpu = torch.empty(1)
    bias = torch.zeros(1)
    assert flex_pays(cuda, bias, 0.)
    assert not flex_pays(cuda, None, 0.)  # no bias: SDPA's FlashAttention kernel
    assert not flex_pays(cuda, bias, 0.1)  # FlexAttention has no attention dropout
    assert not flex_pays(cpu, bias, 0.)
    with pytest.raises(ValueError, match="'flex' has no attention dropout"):
        Attention(DIMS, HEADS, attn_drop=0.1, backend='flex').train()(torch.randn(1, TOKENS, DIMS), rpb())
