"""Edge models (SPEC 2.1, 2.6) and the edge-detector init (SPEC 3.2)."""
from __future__ import annotations

import inspect

import pytest
import torch
from torch.func import functional_call, stack_module_state, vmap

from core.errors import ConfigError
from trainables.models import MODELS, build_model, count_params
from trainables.models import edge
from trainables.models.edge_init import edge_detector_kernels, sobel

# (registry name, constructor kwargs, parameter count from SPEC 2.1)
PARAM_CASES = [
    ("simple_cnn", dict(kernel_size=7), 606),
    ("simple_cnn", dict(kernel_size=7, num_classes=5), 614),
    ("simple_cnn", dict(kernel_size=3), 126),
    ("simple_cnn_avgpool", dict(kernel_size=7, num_classes=5), 614),
    ("wider_cnn", dict(kernel_size=3), 425),
    ("deeper_cnn", dict(kernel_size=3), 302),
    ("three_layer_cnn", {}, 405_252),
    ("two_layer_mlp", {}, 7_883),
    ("three_layer_mlp", dict(hidden_dims=(50, 10)), 39_793),
    ("three_layer_mlp", dict(hidden_dims=[50, 10], num_classes=5), 39_815),
]
EDGE_NAMES = sorted(n for n, cls in MODELS.items() if getattr(cls, "__module__", "") == edge.__name__)


def test_every_edge_model_is_registered_and_counted():
    assert EDGE_NAMES == sorted(["simple_cnn", "simple_cnn_avgpool", "wider_cnn", "deeper_cnn",
                                 "three_layer_cnn", "two_layer_mlp", "three_layer_mlp"])
    assert {name for name, _, _ in PARAM_CASES} == set(EDGE_NAMES)


@pytest.mark.parametrize("name,kwargs,expected", PARAM_CASES)
def test_param_count_matches_spec(name, kwargs, expected):
    total, trainable = count_params(build_model(name, **kwargs))
    assert total == expected and trainable == expected


@pytest.mark.parametrize("name", EDGE_NAMES)
@pytest.mark.parametrize("batch", [1, 5])
def test_forward_keeps_batch_dim(name, batch):
    torch.manual_seed(0)
    model = build_model(name)
    model.eval()
    out = model(torch.rand(batch, 1, 28, 28))
    n_classes = inspect.signature(MODELS[name]).parameters["num_classes"].default
    assert out.shape == (batch, n_classes)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("k,sizes", [(7, [28, 28, 14, 14, 14]), (3, [28, 28, 14, 14, 14]),
                                     (2, [27, 27, 13, 12, 12])])
@pytest.mark.parametrize("cls", [edge.SimpleCNN, edge.SimpleCNNAvgPool])
def test_get_features_shapes(cls, k, sizes):
    model = cls(kernel_size=k)
    assert (model.num_filter, model.kernel_size) == (3, k)
    feats = model.get_features(torch.rand(1, 1, 28, 28))
    assert [f.shape[-1] for f in feats[:5]] == sizes
    assert feats[5].shape == (1, 3)
    model.eval()
    x = torch.rand(2, 1, 28, 28)
    feats = model.get_features(x)
    assert torch.equal(feats[1], torch.relu(feats[0])) and torch.equal(feats[4], torch.relu(feats[3]))
    torch.testing.assert_close(model.fc(feats[5]), model(x))


def test_avgpool_has_same_initial_weights_but_different_pooling():
    torch.manual_seed(10)
    a = edge.SimpleCNN(kernel_size=7, num_classes=5)
    torch.manual_seed(10)
    b = edge.SimpleCNNAvgPool(kernel_size=7, num_classes=5)
    for (na, pa), (nb, pb) in zip(a.named_parameters(), b.named_parameters()):
        assert na == nb and torch.equal(pa, pb)
    x = torch.rand(4, 1, 28, 28)
    assert not torch.allclose(a(x), b(x))


def test_reflect_padding_used():
    model = edge.SimpleCNN(kernel_size=7)
    assert model.conv1.padding_mode == "reflect" and model.conv1.padding == (3, 3)
    assert edge.ThreeLayerCNN().conv1.padding_mode == "zeros"


def test_three_layer_mlp_seed_is_deterministic_and_leaves_global_rng():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = edge.ThreeLayerMLP(hidden_dims=(50, 10), seed=7)
    assert torch.equal(torch.get_rng_state(), before)  # global stream untouched
    b = edge.ThreeLayerMLP(hidden_dims=(50, 10), seed=7)
    c = edge.ThreeLayerMLP(hidden_dims=(50, 10), seed=8)
    assert torch.equal(a.fc1.weight, b.fc1.weight)
    assert not torch.equal(a.fc1.weight, c.fc1.weight)


def test_three_layer_mlp_notebook_flag_reseeds_globally_with_same_weights():
    torch.manual_seed(123)
    nb = edge.ThreeLayerMLP(hidden_dims=(50, 10), seed=7, notebook_global_seed=True)
    after_nb = torch.rand(3)
    fork = edge.ThreeLayerMLP(hidden_dims=(50, 10), seed=7)
    for p, q in zip(nb.parameters(), fork.parameters()):
        assert torch.equal(p, q)
    # The global stream continues from seed 7 plus the MLP's own draws, as in the notebook.
    torch.manual_seed(7)
    torch.nn.Linear(784, 50), torch.nn.Linear(50, 10), torch.nn.Linear(10, 3)
    assert torch.equal(after_nb, torch.rand(3))


def test_sobel_k3_rows():
    expected = torch.tensor([[-0.5, 0.0, 0.5], [-1.0, 0.0, 1.0], [-0.5, 0.0, 0.5]])
    assert torch.equal(sobel(3, 0), expected)
    assert torch.equal(sobel(3, 1), expected.t())
    assert sobel(3, 0).dtype == torch.float32


def test_edge_detector_k3_uses_sobel_and_zero_none():
    model = edge.SimpleCNN(kernel_size=3, init="edge_detector")
    w = model.conv1.weight
    assert torch.equal(w[0, 0], sobel(3, 0)) and torch.equal(w[1, 0], sobel(3, 1))
    assert torch.equal(w[2, 0], torch.zeros(3, 3))
    for o in range(3):
        for c in range(3):
            assert torch.equal(model.conv2.weight[o, c], w[o, 0])
    assert not model.conv1.bias.any() and not model.conv2.bias.any()


def test_edge_detector_k7_rows_and_random_copy():
    torch.manual_seed(10)
    plain = edge.SimpleCNN(kernel_size=7)
    torch.manual_seed(10)
    model = edge.SimpleCNN(kernel_size=7, init="edge_detector")
    k0 = model.conv1.weight[0, 0]
    assert torch.equal(k0[2], torch.ones(7)) and torch.equal(k0[3], -torch.ones(7))
    assert k0[[0, 1, 4, 5, 6]].abs().sum() == 0
    assert torch.equal(model.conv1.weight[1, 0], k0.t())
    # Faithful "none" kernel: a copy of conv1's random filter 0 before the overwrite.
    assert torch.equal(model.conv1.weight[2, 0], plain.conv1.weight[0, 0])
    zeros = edge.SimpleCNN(kernel_size=7, init="edge_detector", none_kernel="zeros")
    assert torch.equal(zeros.conv1.weight[2, 0], torch.zeros(7, 7))


def test_edge_detector_k2_kernels():
    kernels = edge_detector_kernels(2)
    assert kernels.tolist() == [[[1, 1], [-1, -1]], [[1, -1], [1, -1]], [[0, 0], [0, 0]]]


def test_freeze_conv_leaves_only_fc():
    model = edge.SimpleCNN(kernel_size=7, init="edge_detector", freeze_conv=True)
    assert count_params(model) == (606, 12)
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ["fc.weight", "fc.bias"]
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    before = model.conv1.weight.clone()
    loss = torch.nn.functional.cross_entropy(model(torch.rand(4, 1, 28, 28)), torch.tensor([0, 1, 2, 0]))
    loss.backward()
    opt.step()
    assert torch.equal(model.conv1.weight, before)


@pytest.mark.parametrize("kwargs", [
    dict(kernel_size=0), dict(num_filter=0), dict(num_classes=0), dict(init="xavier"),
    dict(init="edge_detector", num_filter=4), dict(init="edge_detector", kernel_size=4),
    dict(none_kernel="ones"), dict(kernel_size=2.5),
])
def test_simple_cnn_rejects_bad_arguments(kwargs):
    with pytest.raises(ConfigError) as err:
        edge.SimpleCNN(**kwargs)
    assert repr(next(iter(kwargs.values()))) in str(err.value) or str(next(iter(kwargs.values()))) in str(err.value)


@pytest.mark.parametrize("kwargs", [dict(hidden_dims=(10,)), dict(hidden_dims=(10, 0)),
                                    dict(input_dim=(28, 28)), dict(seed=1.5)])
def test_three_layer_mlp_rejects_bad_arguments(kwargs):
    with pytest.raises(ConfigError):
        edge.ThreeLayerMLP(**kwargs)


@pytest.mark.parametrize("cls,kwargs", [(edge.SimpleCNN, dict(kernel_size=7)),
                                        (edge.ThreeLayerMLP, dict(hidden_dims=(50, 10)))])
def test_vmap_over_stacked_copies_matches_each_model(cls, kwargs):
    models = []
    for i in range(3):
        torch.manual_seed(i)
        models.append(cls(**kwargs, **({"seed": i} if cls is edge.ThreeLayerMLP else {})))
    params, buffers = stack_module_state(models)
    skeleton = cls(**kwargs).to("meta")
    x = torch.rand(3, 4, 1, 28, 28)
    out = vmap(lambda p, b, xx: functional_call(skeleton, (p, b), (xx,)))(params, buffers, x)
    ref = torch.stack([m(x[i]) for i, m in enumerate(models)])
    assert out.shape == (3, 4, 3)
    torch.testing.assert_close(out, ref)
