"""MobileNetV2 (Sandler et al. 2018), CIFAR variant: the first conv and the second stage use stride 1
(so 32x32 inputs end at 4x4), as in the widely used CIFAR port (kuangliu/pytorch-cifar); inverted
residual blocks (1x1 expand, 3x3 depthwise, 1x1 project, BN after each, ReLU6 omitted in favour of ReLU
as in that port), an identity shortcut where shapes match and a 1x1-conv + BN shortcut where only the
channel count differs at stride 1, a 1x1 conv to 1280 channels, global average pool, one linear head.
Depthwise convs are ``Conv2d`` with groups and therefore prunable like any conv.
Kaiming-normal init (fan-in, ReLU gain). CIFAR-10: 2,296,922 parameters.

RReg's table lists "MN"; its reference code ships no MobileNet, so this CIFAR MobileNetV2 is our reading.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from paibench.models.base import kaiming_init, scaled

# (expansion, out channels, blocks, stride) -- stride 1 in the second row is the CIFAR change.
CFG = [(1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, expansion: int, stride: int):
        super().__init__()
        hidden = cin * expansion
        self.conv1 = nn.Conv2d(cin, hidden, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(hidden)
        self.conv2 = nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False)
        self.bn2 = nn.BatchNorm2d(hidden)
        self.conv3 = nn.Conv2d(hidden, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.stride = stride
        self.shortcut = None
        if stride == 1 and cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.stride == 1:
            out = out + (self.shortcut(x) if self.shortcut is not None else x)
        return out


class MobileNetV2(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, width: float = 1.0):
        super().__init__()
        stem = scaled(32, width)
        self.conv = nn.Conv2d(in_channels, stem, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(stem)
        layers, cin = [], stem
        for expansion, c, n, stride in CFG:
            cout = scaled(c, width)
            for i in range(n):
                layers.append(InvertedResidual(cin, cout, expansion, stride if i == 0 else 1))
                cin = cout
        self.blocks = nn.Sequential(*layers)
        last = scaled(1280, width)
        self.conv_last = nn.Conv2d(cin, last, 1, bias=False)
        self.bn_last = nn.BatchNorm2d(last)
        self.fc = nn.Linear(last, num_classes)
        kaiming_init(self)

    def forward(self, x):
        out = self.blocks(F.relu(self.bn(self.conv(x))))
        out = F.relu(self.bn_last(self.conv_last(out)))
        return self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))


def build(info, width: float = 1.0):
    return MobileNetV2(info.channels, info.num_classes, width)
