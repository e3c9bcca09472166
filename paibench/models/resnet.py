"""ResNet-18/34/50/101/152 (He et al. 2016) with a choice of stem.

* ``stem: cifar`` -- 3x3 stride-1 conv, no max-pool (kuangliu-style CIFAR ResNet, as FORCE's
  ``experiments/models.py`` uses on CIFAR and Tiny-ImageNet, ``in_planes=64``).
* ``stem: imagenet`` -- 7x7 stride-2 conv and a 3x3 stride-2 max-pool (torchvision layout, as RReg's
  ``src/model_factory/models/resnet/resnet.py`` uses on CIFAR-10 and Tiny-ImageNet).

Blocks: basic (18/34) or bottleneck with the stride on the 3x3 conv (ResNet v1.5, as both references),
1x1-conv + BN projection shortcuts where the shape changes, global average pool, one linear head.
Init: Kaiming normal (fan-in, ReLU gain) on every conv/linear weight -- what FORCE applies before pruning;
torchvision/RReg use fan-out on convs (same distribution family, different scale by the kernel area
ratio; noted, not reproduced). ResNet-18 (CIFAR stem) on CIFAR-10: 11,173,962 parameters;
ResNet-50: 23,520,842.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from paibench.models.base import kaiming_init, scaled

LAYOUTS = {
    18: ("basic", [2, 2, 2, 2]),
    34: ("basic", [3, 4, 6, 3]),
    50: ("bottleneck", [3, 4, 6, 3]),
    101: ("bottleneck", [3, 4, 23, 3]),
    152: ("bottleneck", [3, 8, 36, 3]),
}


def _projection(cin: int, cout: int, stride: int) -> nn.Module | None:
    if stride == 1 and cin == cout:
        return None
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


class Basic(nn.Module):
    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = _projection(cin, planes, stride)

    def forward(self, x):
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(out + (self.shortcut(x) if self.shortcut is not None else x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int):
        super().__init__()
        cout = planes * self.expansion
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.shortcut = _projection(cin, cout, stride)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + (self.shortcut(x) if self.shortcut is not None else x))


class ResNet(nn.Module):
    def __init__(self, depth: int, in_channels: int, num_classes: int, width: float = 1.0, stem: str = "cifar"):
        super().__init__()
        kind, counts = LAYOUTS[depth]
        block = Basic if kind == "basic" else Bottleneck
        base = scaled(64, width)
        if stem == "imagenet":
            self.conv = nn.Conv2d(in_channels, base, 7, 2, 3, bias=False)
            self.pool = nn.MaxPool2d(3, 2, 1)
        else:
            self.conv = nn.Conv2d(in_channels, base, 3, 1, 1, bias=False)
            self.pool = nn.Identity()
        self.bn = nn.BatchNorm2d(base)
        layers, cin = [], base
        for stage, count in enumerate(counts):
            planes = scaled(64 * 2**stage, width)
            for i in range(count):
                layers.append(block(cin, planes, 2 if stage > 0 and i == 0 else 1))
                cin = planes * block.expansion
        self.blocks = nn.Sequential(*layers)
        self.fc = nn.Linear(cin, num_classes)
        kaiming_init(self)

    def forward(self, x):
        out = self.pool(F.relu(self.bn(self.conv(x))))
        out = self.blocks(out)
        return self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))


def builder(depth: int):
    def build(info, width: float = 1.0, stem: str = "cifar"):
        return ResNet(depth, info.channels, info.num_classes, width, stem)

    return build
