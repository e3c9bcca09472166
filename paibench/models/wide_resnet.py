"""Wide ResNets WRN-d-k (Zagoruyko & Komodakis 2016) for 32x32 inputs: pre-activation basic blocks
(BN-ReLU-conv), stage widths 16k/32k/64k after a 16-channel stem, (d-4)/6 blocks per stage, a 1x1-conv
projection shortcut where the width or stride changes, no dropout. Kaiming-normal init (fan-in, ReLU
gain), zero biases, unit BN. WRN-28-10 on CIFAR-10: 36,479,194 parameters, the reference count.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from paibench.models.base import kaiming_init, scaled


class PreActBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x):
        o = F.relu(self.bn1(x))
        # The projection sees the pre-activated input, as in the reference implementation.
        short = self.shortcut(o) if self.shortcut is not None else x
        out = self.conv2(F.relu(self.bn2(self.conv1(o))))
        return out + short


class WideResNet(nn.Module):
    def __init__(self, depth: int, k: int, in_channels: int, num_classes: int, width: float = 1.0):
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"WRN depth must be 6n+4, got {depth}")
        n = (depth - 4) // 6
        stem = scaled(16, width)
        widths = [scaled(c * k, width) for c in (16, 32, 64)]
        self.conv = nn.Conv2d(in_channels, stem, 3, 1, 1, bias=False)
        blocks, cin = [], stem
        for stage, cout in enumerate(widths):
            for i in range(n):
                blocks.append(PreActBlock(cin, cout, 2 if stage > 0 and i == 0 else 1))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.bn = nn.BatchNorm2d(cin)
        self.fc = nn.Linear(cin, num_classes)
        kaiming_init(self)

    def forward(self, x):
        out = F.relu(self.bn(self.blocks(self.conv(x))))
        return self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))


def builder(depth: int, k: int):
    def build(info, width: float = 1.0):
        return WideResNet(depth, k, info.channels, info.num_classes, width)

    return build
