"""CIFAR-style VGG with batch norm, in three reference flavours.

* ``vgg11``/``vgg13``/``vgg16``/``vgg19`` -- open_lth / Synaptic-Flow ``lottery_vgg`` (used by MiCA and
  SynFlow): 3x3 convs *with bias*, BN, ReLU, 2x2 max-pools after each stage but the last, a 2x2 average
  pool and one ``Linear(512, classes)``. Kaiming-normal init (fan-in, ReLU gain), zero biases, unit BN.
  VGG-16 on CIFAR-10: 14,728,266 parameters.
* ``vgg19_force`` -- FORCE (naver/force ``experiments/models.py``): the same plan but convs *without* bias;
  FORCE re-initialises every conv/linear weight with Kaiming normal (fan-in) before pruning, which is
  our init too. VGG-19 on CIFAR-10: 20,035,018 parameters.
* ``vgg16_rreg`` -- RReg (SamsungLabs/ExpandersPruning ``vgg16bn.py``, torchvision layout): a max-pool
  after all five stages, convs with bias and a ``512-512-classes`` head with ReLU and dropout 0.5;
  torchvision's init (conv Kaiming normal fan-out, linear N(0, 0.01)). CIFAR-10: 14,990,922 parameters.

On inputs smaller than 32x32 a max-pool is skipped once the map is 1x1, and the head always sees a global
average pool, which equals the references' 2x2 (CIFAR) / 4x4 (FORCE on Tiny-ImageNet) average pool.
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
    def __init__(self, plan, in_channels: int, size: int, num_classes: int, width: float = 1.0,
                 conv_bias: bool = True, hidden: int = 0, dropout: float = 0.0):
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
            layers += [nn.Conv2d(channels, out, 3, padding=1, bias=conv_bias), nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
            channels = out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        if hidden:  # torchvision-style two-layer head (RReg)
            h = scaled(hidden, width)
            self.fc = nn.Sequential(nn.Linear(channels, h), nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(h, num_classes))
        else:
            self.fc = nn.Linear(channels, num_classes)
        kaiming_init(self)

    def forward(self, x):
        return self.fc(self.pool(self.features(x)).flatten(1))


def _torchvision_init(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)


def builder(plan_name: str, flavour: str = "lottery"):
    def build(info, width: float = 1.0):
        size = min(info.size)
        if flavour == "force":
            return VGG(PLANS[plan_name], info.channels, size, info.num_classes, width, conv_bias=False)
        if flavour == "rreg":
            model = VGG(PLANS[plan_name] + ["M"], info.channels, size, info.num_classes, width,
                        conv_bias=True, hidden=512, dropout=0.5)
            _torchvision_init(model)
            return model
        return VGG(PLANS[plan_name], info.channels, size, info.num_classes, width, conv_bias=True)

    return build
