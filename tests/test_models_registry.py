"""Model registry, architectures' shapes for several specs, and in-model normalisation."""

from __future__ import annotations

import pytest
import torch

from xrobust.data.spec import DatasetSpec
from xrobust.errors import ConfigError
from xrobust.models import MODELS, Normalize, NormalizedModel, build_model, list_models


def _spec(shape: tuple[int, ...], classes: int = 10, mean=None, std=None) -> DatasetSpec:
    modality = "image" if len(shape) == 3 else "tabular"
    return DatasetSpec(
        "t", modality, shape, classes, tuple(str(i) for i in range(classes)), (0.0, 1.0), mean, std
    )


def test_registry_lists_and_suggests() -> None:
    assert list_models() == ["mlp", "resnet", "small_cnn"]
    assert list_models("*cnn") == ["small_cnn"]
    with pytest.raises(ConfigError, match="small_cnn"):
        build_model("small_cn", _spec((1, 8, 8)))


def test_unknown_option_is_refused_and_none_ignored() -> None:
    with pytest.raises(ConfigError, match=r"no option.*'widht'.*available: depth, width"):
        build_model("resnet", _spec((3, 32, 32)), widht=8)
    torch.manual_seed(0)
    a = build_model("mlp", _spec((30,), 2), hidden=None, dropout=None)
    torch.manual_seed(0)
    b = build_model("mlp", _spec((30,), 2))
    assert [p.shape for p in a.parameters()] == [p.shape for p in b.parameters()]
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


CASES = [
    ("mlp", (30,), {}),
    ("mlp", (1, 8, 8), {"hidden": [16], "dropout": 0.0}),
    ("mlp", (5,), {"hidden": [], "activation": "gelu"}),
    ("small_cnn", (1, 8, 8), {}),
    ("small_cnn", (1, 28, 28), {}),
    ("small_cnn", (3, 32, 32), {"channels": [4, 8], "hidden": 16}),
    ("small_cnn", (2, 9, 13), {}),
    ("resnet", (3, 32, 32), {"width": 8}),
    ("resnet", (1, 20, 20), {"depth": 14, "width": 4}),
    ("resnet", (1, 8, 8), {"width": 4}),
]


@pytest.mark.parametrize(("name", "shape", "kwargs"), CASES)
def test_architectures_map_inputs_to_logits(
    name: str, shape: tuple[int, ...], kwargs: dict
) -> None:
    torch.manual_seed(0)
    classes = 7
    model = build_model(name, _spec(shape, classes), **kwargs)
    model.eval()
    x = torch.rand(3, *shape, requires_grad=True)
    out = model(x)
    assert out.shape == (3, classes) and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    out.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0  # gradients reach the input
    # each row depends only on its own input (no batch coupling in eval mode)
    assert torch.allclose(model(x[1:2]), out[1:2], atol=1e-5)


@pytest.mark.parametrize(
    ("name", "shape"), [("small_cnn", (1, 4, 4)), ("small_cnn", (30,)), ("resnet", (10,))]
)
def test_unsuitable_specs_are_refused(name: str, shape: tuple[int, ...]) -> None:
    with pytest.raises(ConfigError):
        build_model(name, _spec(shape))


def test_bad_option_values_are_refused() -> None:
    with pytest.raises(ConfigError, match="depth"):
        build_model("resnet", _spec((3, 32, 32)), depth=10)
    with pytest.raises(ConfigError, match="dropout"):
        build_model("mlp", _spec((4,), 2), dropout=1.5)
    with pytest.raises(ConfigError, match="activation"):
        build_model("mlp", _spec((4,), 2), activation="swishy")
    with pytest.raises(ConfigError, match="DatasetSpec"):
        build_model("mlp", {"input_shape": (4,)})  # type: ignore[arg-type]


def test_image_normalisation_lives_inside_the_model() -> None:
    mean, std = (0.5, 0.25, 0.1), (0.2, 0.5, 1.0)
    spec = _spec((3, 10, 10), 4, mean, std)
    torch.manual_seed(0)
    model = build_model("small_cnn", spec).eval()
    assert isinstance(model, NormalizedModel)
    x = torch.rand(2, 3, 10, 10)
    manual = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    assert torch.equal(model(x), model.net(manual))
    # the normalisation constants travel with the weights
    sd = model.state_dict()
    assert torch.equal(sd["normalize.mean"].flatten(), torch.tensor(mean))
    assert torch.equal(sd["normalize.std"].flatten(), torch.tensor(std))


def test_tabular_normalisation_is_per_feature() -> None:
    mean, std = (1.0, -2.0, 3.0), (2.0, 4.0, 0.5)
    model = build_model("mlp", _spec((3,), 2, mean, std), hidden=[4]).eval()
    x = torch.randn(5, 3)
    expect = model.net((x - torch.tensor(mean)) / torch.tensor(std))
    assert torch.equal(model(x), expect)
    assert "normalize" not in dict(build_model("mlp", _spec((3,), 2)).named_children())


def test_normalize_validates() -> None:
    with pytest.raises(ConfigError, match="std"):
        Normalize((0.0,), (0.0,))
    with pytest.raises(ConfigError, match="equal length"):
        Normalize((0.0, 1.0), (1.0,))
    with pytest.raises(ConfigError, match="only one of"):
        build_model("mlp", _spec((3,), 2, mean=(0.0, 0.0, 0.0)))


def test_every_registered_model_builds_on_a_suitable_spec() -> None:
    # a new registration is exercised here without editing the test
    for name in MODELS.list():
        spec = _spec((3, 16, 16), 3)
        try:
            model = build_model(name, spec)
        except ConfigError:
            spec = _spec((12,), 3)
            model = build_model(name, spec)
        assert model(torch.rand(2, *spec.input_shape)).shape == (2, 3)


def test_every_registry_method_reads_one_spelling() -> None:
    """register, get, in, source, list(pattern), items and unregister agree: any case, and
    '-' read as '_' (issue 21 item 7; register used to keep the hyphen that get dropped)."""
    from xrobust.registry import Registry, normalise

    r: Registry[type] = Registry("widget")  # not a plugin group: nothing to load
    obj = type("TorqueWrench", (), {})
    r.register("Torque-Wrench")(obj)
    spellings = ["torque-wrench", "TORQUE_WRENCH", " Torque-wrench "]
    assert {normalise(s) for s in spellings} == {"torque_wrench"}
    assert all(
        r.get(s) is obj and s in r and r.source(s) == f"module {__name__}" for s in spellings
    )
    assert r.list() == ["torque_wrench"] and r.items() == [("torque_wrench", obj)]
    for pattern in ("torque-*", "TORQUE_*", "*-wrench", "t*"):
        assert r.list(pattern) == ["torque_wrench"], pattern
    assert r.list("[a-s]*") == [] and r.list("[s-u]*") == ["torque_wrench"]  # ranges kept
    with pytest.raises(ValueError, match="already registered"):
        r.register("torque_WRENCH")(type("Other", (), {}))
    with pytest.raises(ValueError, match="must not be empty"):
        r.register(" ")
    r.unregister("TORQUE-wrench")
    assert len(r) == 0 and "torque_wrench" not in r and 7 not in r
    with pytest.raises(ConfigError, match="unknown widget 'torque-wrench'"):
        r.source("torque-wrench")


def test_model_names_are_read_like_the_registry() -> None:
    spec = _spec((1, 8, 8))
    torch.manual_seed(0)
    a = build_model("Small-CNN", spec)
    torch.manual_seed(0)
    b = build_model("small_cnn", spec)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert MODELS.source("small-cnn") == "built-in"
