"""A small CNN for 8×8 hand-written digits (scikit-learn's ``load_digits``).

One class with a no-argument constructor: TorchServe's eager-mode contract (MANIFEST ``modelFile``
plus a state-dict ``serializedFile``).
"""

import torch
from torch import nn


class DigitsCNN(nn.Module):
    """Two 3×3 convolutions, one pooling step, two dense layers: 1×8×8 → 10 logits."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(32 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
