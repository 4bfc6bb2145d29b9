"""The channels_last evaluation copy (xrobust.models._layout): used only where it is
safe, always in step with the caller's module, which it never changes, and falling
back to the module itself where it cannot stand in for it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from xrobust.attacks import get_attack
from xrobust.errors import ConfigError
from xrobust.models import TorchClassifier, as_classifier
from xrobust.models._layout import ChannelsLastCopy, auto_channels_last
from xrobust.models.mlp import MLP
from xrobust.models.small_cnn import SmallCNN


def _cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return SmallCNN((1, 12, 12), 4, channels=(4, 8), hidden=16)


def _x(n: int = 16, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, 1, 12, 12, generator=torch.Generator().manual_seed(seed))


class _ViewNet(nn.Module):
    """A user forward that calls ``.view`` on a feature map (fails on channels_last)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1))
        self.head = nn.Linear(4 * 12 * 12, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x)
        return self.head(h.view(h.shape[0], -1))  # raises on a channels_last feature map


def test_auto_policy() -> None:
    cpu = torch.device("cpu")
    assert auto_channels_last(_cnn(), cpu)
    assert not auto_channels_last(MLP(16, 3), cpu)  # no convolution: nothing to gain
    assert not auto_channels_last(_ViewNet(), cpu)  # a user forward: opt-in only
    assert not auto_channels_last(nn.DataParallel(_cnn()), cpu)
    assert not auto_channels_last(_cnn(), torch.device("cuda"))
    assert TorchClassifier(_cnn()).describe()["channels_last"] is True
    assert TorchClassifier(_cnn(), channels_last=False).describe()["channels_last"] is False
    assert TorchClassifier(_ViewNet()).describe()["channels_last"] is False
    with pytest.raises(ConfigError, match="channels_last"):
        TorchClassifier(_cnn(), channels_last="yes")  # type: ignore[arg-type]


def test_copy_answers_like_the_module_and_leaves_it_untouched() -> None:
    net, x = _cnn(), _x()
    net.train()
    clf = as_classifier(net, input_shape=(1, 12, 12))
    with torch.no_grad():
        want = net.eval()(x)
    net.train()
    got = clf.scores(x)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    assert clf.runner(x) is not net  # the copy ran
    assert net.training and all(m.training for m in net.modules())
    assert all(p.requires_grad for p in net.parameters())
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            assert m.weight.is_contiguous()  # the caller's weights keep their layout
            if m.in_channels > 1:
                assert not m.weight.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("how", ["optimizer", "load_state_dict", "data", "new_parameter"])
def test_copy_follows_weight_changes(how: str) -> None:
    net, x = _cnn(), _x()
    clf = as_classifier(net, input_shape=(1, 12, 12))
    before = clf.scores(x)
    if how == "optimizer":
        opt = torch.optim.SGD(net.parameters(), lr=0.5)
        net(x).logsumexp(1).sum().backward()
        opt.step()
    elif how == "load_state_dict":
        net.load_state_dict(_cnn(seed=7).state_dict())
    elif how == "data":  # invisible to autograd's version counters
        with torch.no_grad():
            net.features[0].weight.data.mul_(-1.0)
    else:
        net.classifier[-1].weight = nn.Parameter(torch.randn_like(net.classifier[-1].weight))
    with torch.no_grad():
        want = net.eval()(x)
    after = clf.scores(x)
    assert not torch.allclose(after, before)
    torch.testing.assert_close(after, want, rtol=1e-4, atol=1e-5)


def test_structure_change_makes_a_fresh_copy() -> None:
    net, x = _cnn(), _x()
    clf = as_classifier(net, input_shape=(1, 12, 12))
    clf.scores(x)
    net.classifier[2] = nn.Tanh()  # ReLU -> Tanh: no tensor changes, the structure does
    with torch.no_grad():
        want = net.eval()(x)
    torch.testing.assert_close(clf.scores(x), want, rtol=1e-4, atol=1e-5)


def test_a_hook_added_later_is_followed() -> None:
    net, x = _cnn(), _x()
    clf = as_classifier(net, input_shape=(1, 12, 12))
    clf.scores(x)
    handle = net.classifier[-1].register_forward_hook(lambda m, i, out: out * 0 + 1.0)
    torch.testing.assert_close(clf.scores(x), torch.ones(len(x), 4))
    handle.remove()
    with torch.no_grad():
        want = net.eval()(x)
    torch.testing.assert_close(clf.scores(x), want, rtol=1e-4, atol=1e-5)


def test_forced_copy_falls_back_when_it_cannot_stand_in() -> None:
    net, x = _ViewNet(), _x()
    fast = ChannelsLastCopy(net)
    assert fast.get(x) is net and fast.disabled  # `.view` on the channels_last map raised
    clf = TorchClassifier(net, channels_last=True, input_shape=(1, 12, 12))
    with torch.no_grad():
        want = net(x)
    torch.testing.assert_close(clf.scores(x), want)
    assert clf.describe()["channels_last"] is False


def test_gradients_through_the_copy_are_the_modules() -> None:
    net, x = _cnn(), _x()
    clf = as_classifier(net, input_shape=(1, 12, 12))
    fast = clf.runner(x)
    assert fast is not net
    grads = []
    for m in (net.eval(), fast):
        xr = x.clone().requires_grad_(True)
        m(xr).logsumexp(1).sum().backward()
        grads.append(xr.grad)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-4, atol=1e-6)


def test_attack_results_match_with_and_without_the_copy() -> None:
    net, x = _cnn(), _x(32)
    with torch.no_grad():
        y = net.eval()(x).argmax(1)
    res = {}
    for cl in (False, True):
        clf = as_classifier(net, input_shape=(1, 12, 12), bounds=(0.0, 1.0), channels_last=cl)
        res[cl] = get_attack("pgd", clf, eps=0.1, steps=5, seed=0).run(x, y)
    assert torch.equal(res[True].success, res[False].success)
    torch.testing.assert_close(res[True].x_adv, res[False].x_adv, rtol=0, atol=1e-4)
