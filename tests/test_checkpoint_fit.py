"""The one 'does this state dict fill this module' comparison, and the one table of ResNet stage widths."""
from __future__ import annotations

import pytest
import torch
import torchvision

from transfer.checkpoint.fit import state_dict_fit
from transfer.checkpoint.resnet import DEPTHS, STAGE_CHANNELS


def test_fit_names_missing_unexpected_and_reshaped_keys():
    wanted = torch.nn.BatchNorm1d(3).state_dict()  # weight, bias, running_mean, running_var, num_batches_tracked
    given = {"weight": torch.ones(3), "bias": torch.ones(4), "extra": torch.ones(1)}
    fit = state_dict_fit(wanted, given)
    assert fit.missing == ["running_mean", "running_var"]  # the batch counter is optional
    assert fit.unexpected == ["extra"] and fit.wrong_shape == ["bias"] and fit.shapes["bias"] == ((4,), (3,))
    assert not fit.fills() and not fit.fills(allow_unexpected=True)
    assert fit.describe() == ("2 tensors missing (e.g. running_mean, running_var); 1 tensor unexpected (e.g. extra); "
                              "1 tensor with another shape (e.g. bias (4,) vs (3,))")
    complete = {**wanted, "extra": torch.ones(1)}
    assert state_dict_fit(wanted, complete).fills(allow_unexpected=True)
    assert not state_dict_fit(wanted, complete).fills()
    # shapes may stand in for tensors, and nothing need be optional
    strict = state_dict_fit({k: tuple(v.shape) for k, v in wanted.items()}, dict(wanted), optional=lambda k: False)
    assert strict.fills()
    assert state_dict_fit(wanted, {}, optional=lambda k: False).missing == list(wanted)


@pytest.mark.parametrize("arch", list(DEPTHS))
def test_stage_channels_are_torchvisions(arch):
    with torch.device("meta"):
        model = getattr(torchvision.models, arch)()
    widths = tuple(stage[-1].bn2.num_features if arch in ("resnet18", "resnet34") else stage[-1].bn3.num_features
                   for stage in (model.layer1, model.layer2, model.layer3, model.layer4))
    assert STAGE_CHANNELS[DEPTHS[arch]] == widths


def test_resnet_trunk_takes_a_state_dict_without_batch_counters_but_not_without_a_weight():
    """Checkpoints of older torch versions have no `num_batches_tracked`; a missing weight is still refused."""
    from transfer.backbone import resnet_trunk
    from transfer.errors import UserError

    state = {k: v for k, v in torchvision.models.resnet18().state_dict().items()
             if not k.startswith("fc.") and not k.endswith("num_batches_tracked")}
    trunk = resnet_trunk("resnet18", state)
    assert torch.equal(trunk.conv1.weight, state["conv1.weight"])
    del state["layer1.0.conv1.weight"]
    with pytest.raises(UserError, match="layer1.0.conv1.weight"):
        resnet_trunk("resnet18", state)
