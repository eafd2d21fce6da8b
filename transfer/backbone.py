"""The ResNet trunk that pretraining trains and evaluation reads: torchvision's ResNet up to the last feature
map (no pooling, no fc), and the input normalisation it expects.

Its state dict has exactly torchvision's key names without `fc.*`, the canonical
backbone state dict that `transfer.checkpoint.load_backbone` returns and the
converter writes out.
"""
from __future__ import annotations

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

from transfer.checkpoint import resnet
from transfer.checkpoint.fit import state_dict_fit
from transfer.errors import UserError

# the ImageNet mean and std every ResNet here normalises its input with (pretraining and evaluation alike)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# name -> (block, blocks per stage), from the converter's table of the same architectures
ARCHS: dict[str, tuple[type[nn.Module], list[int]]] = {
    name: (BasicBlock if block == "basic" else Bottleneck, list(layers))
    for (block, layers), name in resnet.ARCHS.items()
}


class ResNetTrunk(ResNet):
    """torchvision's ResNet without `avgpool` and `fc`: image N x 3 x H x W -> feature map N x C x H/32 x W/32."""

    def __init__(self, arch: str):
        if arch not in ARCHS:
            raise UserError(f"unknown arch {arch!r}; choose one of {', '.join(ARCHS)}")
        block, layers = ARCHS[arch]
        super().__init__(block, layers)
        self.arch = arch
        self.out_channels = resnet.STAGE_CHANNELS[resnet.DEPTHS[arch]][-1]
        del self.fc, self.avgpool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The stride-32 feature map."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def resnet_trunk(arch: str, state_dict: dict[str, torch.Tensor] | None = None, origin: str = "") -> ResNetTrunk:
    """A ResNet trunk, randomly initialised or loaded from a canonical backbone state dict (every tensor; BN batch
    counters, which checkpoints of older torch versions lack and nothing here reads, may be absent)."""
    model = ResNetTrunk(arch)
    if state_dict is not None:
        fit = state_dict_fit(model.state_dict(), state_dict)
        if not fit.fills():
            raise UserError(f"{origin or 'checkpoint'} does not fit a {arch}: {fit.describe()}")
        model.load_state_dict(state_dict, strict=False)  # strict but for the batch counters (checked just above)
    return model
