"""CIFAR-style VGG with batch norm (open_lth / Synaptic-Flow layout): 3x3 convs, 2x2 max-pools, one linear head.

On inputs smaller than 32x32 a max-pool is skipped once the map is 1x1, and the head always sees a global
average pool, which equals the reference's 2x2 average pool on 32x32 inputs.
"""

from __future__ import annotations

from torch import nn

from paibench.models.base import kaiming_init, scaled

PLANS = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512],
    "vgg13": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512],
}


class VGG(nn.Module):
    def __init__(self, plan, in_channels: int, size: int, num_classes: int, width: float = 1.0):
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for item in plan:
            if item == "M":
                if size >= 2:
                    layers.append(nn.MaxPool2d(2))
                    size //= 2
                continue
            out = scaled(item, width)
            layers += [nn.Conv2d(channels, out, 3, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
            channels = out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        kaiming_init(self)

    def forward(self, x):
        return self.fc(self.pool(self.features(x)).flatten(1))


def builder(plan_name: str):
    def build(info, width: float = 1.0):
        return VGG(PLANS[plan_name], info.channels, min(info.size), info.num_classes, width)

    return build
