"""Every registered head: same interface, loss falls on a fixed batch, decoding is right, ordinal heads are monotonic."""

import pytest
import torch

from faceage.models.heads import HEADS, create_head
from faceage.models.heads.base import cumulative_to_distribution

ALL_HEADS = HEADS.names()


@pytest.mark.parametrize("name", ALL_HEADS)
def test_interface_shapes(name):
    head = create_head(name, in_features=16, min_age=0, max_age=20)
    logits = head(torch.randn(5, 16))
    ages = torch.tensor([0.0, 3, 10, 17, 20])
    loss = head.loss(logits, ages)
    assert loss.ndim == 0 and torch.isfinite(loss)
    pred = head.predict(logits)
    assert pred.shape == (5,)
    dist = head.distribution(logits)
    if head.has_distribution:
        assert dist.shape == (5, 21)
        assert torch.allclose(dist.sum(1), torch.ones(5), atol=1e-5)
        assert (dist >= 0).all()
        assert torch.allclose(head.log_distribution(logits).exp(), dist, atol=1e-6)
    else:
        assert dist is None and head.log_distribution(logits) is None


@pytest.mark.parametrize("name", ALL_HEADS)
def test_loss_falls_and_fits_fixed_batch(name):
    torch.manual_seed(0)
    features = torch.randn(32, 8)
    ages = torch.randint(0, 31, (32,)).float()
    head = create_head(name, in_features=8, min_age=0, max_age=30)
    net = torch.nn.Sequential(torch.nn.Linear(8, 64), torch.nn.ReLU(), torch.nn.Linear(64, 8))
    params = list(head.parameters()) + list(net.parameters())
    opt = torch.optim.Adam(params, lr=3e-2)
    first = head.loss(head(net(features)), ages).item()
    for _ in range(150):
        opt.zero_grad()
        loss = head.loss(head(net(features)), ages)
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first
    mae = (head.predict(head(net(features))) - ages).abs().mean().item()
    assert mae < 3.0, f"{name}: MAE {mae:.2f} on a memorisable batch"


def test_softmax_heads_decode_expectation():
    for name in ("ce", "dldl", "mean_variance"):
        head = create_head(name, in_features=4, min_age=10, max_age=12)
        logits = torch.log(torch.tensor([[0.25, 0.5, 0.25], [1.0, 1e-9, 1e-9]]))
        assert torch.allclose(head.predict(logits), torch.tensor([11.0, 10.0]), atol=1e-4)


def test_regression_head_decodes_scaled_output():
    head = create_head("l1", in_features=4, min_age=0, max_age=100)
    assert torch.allclose(head.predict(torch.tensor([[0.0], [1.0], [-0.5]])), torch.tensor([50.0, 100.0, 25.0]))


def test_coral_decode_threshold_and_monotonic_probabilities():
    head = create_head("coral", in_features=4, min_age=0, max_age=5)
    logits = torch.tensor([[5.0, 3.0, 1.0, -1.0, -3.0]])  # P(age>k): .99 .95 .73 .27 .05
    assert head.predict(logits).item() == 3.0
    p = head.exceedance(head(torch.randn(50, 4)))
    assert (p[:, 1:] <= p[:, :-1] + 1e-6).all(), "CORAL exceedance probabilities must be rank-monotonic"


def test_corn_probabilities_monotonic_and_decode():
    head = create_head("corn", in_features=4, min_age=0, max_age=5)
    p = head.exceedance(torch.randn(50, 5) * 3)
    assert (p[:, 1:] <= p[:, :-1] + 1e-7).all()
    logits = torch.tensor([[4.0, 4.0, -4.0, 4.0, 4.0]])  # stops at the first "no"
    assert head.predict(logits).item() == 2.0


def test_cumulative_to_distribution_exact():
    dist = cumulative_to_distribution(torch.tensor([[0.9, 0.6, 0.1]]))
    assert torch.allclose(dist, torch.tensor([[0.1, 0.3, 0.5, 0.1]]), atol=1e-6)


def test_dldl_target_is_centered_gaussian():
    head = create_head("dldl", in_features=4, min_age=0, max_age=20, sigma=2.0)
    target = head.target_distribution(torch.tensor([10.0]))
    assert target.argmax().item() == 10
    assert torch.allclose(target.sum(), torch.tensor(1.0))
    assert torch.allclose(target[0, 8], target[0, 12])


def test_unknown_head_and_bad_kwargs_name_the_problem():
    with pytest.raises(KeyError, match="unknown head 'nope'"):
        create_head("nope", 4)
    with pytest.raises(TypeError, match="dldl"):
        create_head("dldl", 4, sigmaa=2)
