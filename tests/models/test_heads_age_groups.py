"""Training on age-group labels: each head's interval loss against its definition, its gradient, and batches that mix
exact ages and groups."""

from __future__ import annotations

import math

import pytest
import torch
from coral_pytorch.dataset import levels_from_labelbatch
from coral_pytorch.losses import coral_loss

from faceage.models.heads import HEADS, create_head


def test_interval_loss_is_minus_log_mass_inside():
    head = create_head("ce", in_features=4, min_age=0, max_age=4)
    logits = torch.tensor([[0.0, 1.0, 2.0, 1.0, 0.0]])
    p = logits.softmax(dim=1)[0]
    loss = head.interval_loss(logits, torch.tensor([1.0]), torch.tensor([2.0]))  # ages 1 and 2
    assert loss.item() == pytest.approx(-math.log(p[1] + p[2]))
    # known numbers: p = e^[0,1,2,1,0] / sum, the mass on ages 1..2 is (e + e^2) / (2 + 2e + e^2)
    assert loss.item() == pytest.approx(-math.log((math.e + math.e**2) / (2 + 2 * math.e + math.e**2)))


@pytest.mark.parametrize("name", ["ce", "dldl", "mean_variance"])
def test_gradient_moves_mass_into_the_interval(name):
    torch.manual_seed(0)
    head = create_head(name, in_features=4, min_age=0, max_age=20)
    logits = torch.randn(3, head.num_ages, requires_grad=True)
    lows, highs = torch.tensor([3.0, 10.0, 15.0]), torch.tensor([6.0, 12.0, 20.0])
    mask = head.interval_mask(lows, highs)
    assert mask.sum(dim=1).tolist() == [4, 3, 6]
    head.interval_loss(logits, lows, highs).backward()
    assert (logits.grad[mask] <= 0).all() and (logits.grad[~mask] >= 0).all()  # descent raises inside, lowers outside
    before = (logits.softmax(dim=1) * mask).sum(dim=1)
    after = ((logits - 1.0 * logits.grad).softmax(dim=1) * mask).sum(dim=1)
    assert (after > before).all()


def test_groups_are_cut_to_the_head_range():
    head = create_head("dldl", in_features=4, min_age=10, max_age=20)
    mask = head.interval_mask(torch.tensor([15.0, 0.0, 70.0]), torch.tensor([120.0, 2.0, 120.0]))
    ages = head.age_values
    assert ages[mask[0]].tolist() == list(range(15, 21))  # an open group: up to max_age
    assert ages[mask[1]].tolist() == [10] and ages[mask[2]].tolist() == [20]  # wholly outside: the nearest end


def test_mixed_batch_is_the_count_weighted_mean():
    torch.manual_seed(0)
    head = create_head("dldl", in_features=4, min_age=0, max_age=30)
    logits = torch.randn(4, head.num_ages)
    ages = torch.tensor([5.0, 24.5, 12.0, 6.0])
    lows, highs = torch.tensor([5.0, 20.0, 12.0, 3.0]), torch.tensor([5.0, 29.0, 12.0, 9.0])
    exact, grouped = torch.tensor([0, 2]), torch.tensor([1, 3])
    expected = (head.loss(logits[exact], ages[exact]) + head.interval_loss(logits[grouped], lows[grouped], highs[grouped])) / 2
    assert head.label_loss(logits, ages, lows, highs).item() == pytest.approx(expected.item())
    assert head.label_loss(logits, ages, ages, ages).item() == pytest.approx(head.loss(logits, ages).item())
    assert head.label_loss(logits, ages).item() == pytest.approx(head.loss(logits, ages).item())


@pytest.mark.parametrize("name, power", [("l1", 1), ("mse", 2)])
def test_regression_interval_loss_is_the_distance_outside(name, power):
    head = create_head(name, in_features=4, min_age=0, max_age=100)
    ages = torch.tensor([25.0, 35.0, 10.0])
    logits = ((ages - head.center) / head.scale)[:, None]  # predicts exactly these ages
    lows, highs = torch.tensor([20.0, 20.0, 20.0]), torch.tensor([29.0, 29.0, 29.0])
    outside = torch.tensor([0.0, 35 - 29.5, 19.5 - 10]) / head.scale  # span [19.5, 29.5], standardised
    assert head.interval_loss(logits, lows, highs).item() == pytest.approx(outside.pow(power).mean().item())


def test_coral_interval_loss_masks_the_tasks_inside_the_group():
    torch.manual_seed(0)
    head = create_head("coral", in_features=4, min_age=0, max_age=10)
    logits = torch.randn(2, head.num_ages - 1)
    ages = torch.tensor([4.0, 7.0])
    exact = coral_loss(logits, levels_from_labelbatch(ages.long(), num_classes=head.num_ages).float())
    assert head.interval_loss(logits, ages, ages).item() == pytest.approx(exact.item())  # a one-year group
    # group 3..6: tasks "age > 0..2" are true, "age > 6..9" false, "age > 3..5" unknown and left out
    one = logits[:1]
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    target = torch.tensor([[1.0, 1, 1, 0, 0, 0, 0, 0, 0, 0]])
    known = torch.tensor([[1.0, 1, 1, 0, 0, 0, 1, 1, 1, 1]])
    expected = (bce(one, target, reduction="none") * known).sum()
    assert head.interval_loss(one, torch.tensor([3.0]), torch.tensor([6.0])).item() == pytest.approx(expected.item())


def test_corn_refuses_groups_naming_the_config_key():
    head = create_head("corn", in_features=4, min_age=0, max_age=10)
    assert not head.supports_groups
    with pytest.raises(ValueError, match="model.head.name 'corn'"):
        head.label_loss(torch.zeros(1, 10), torch.tensor([5.0]), torch.tensor([3.0]), torch.tensor([6.0]))


@pytest.mark.parametrize("name", [n for n in HEADS.names() if HEADS.get(n).supports_groups])
def test_every_group_capable_head_has_a_finite_interval_loss(name):
    torch.manual_seed(0)
    head = create_head(name, in_features=8, min_age=0, max_age=50)
    logits = head(torch.randn(5, 8))
    loss = head.interval_loss(logits, torch.tensor([0.0, 10, 20, 45, 70]), torch.tensor([2.0, 19, 29, 120, 120]))
    assert torch.isfinite(loss) and loss.item() >= 0
