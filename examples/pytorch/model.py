"""The example's network: a small CNN for 28x28 grey images. Global
average pooling before the head keeps one value per channel, so a
permutation of conv2's channels is a permutation of fc1's inputs, which
spec.toml can say."""

import torch
from torch import nn


class SmallCnn(nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.fc1 = nn.Linear(32, 64)
        self.fc2 = nn.Linear(64, classes)

    def forward(self, x):
        x = torch.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = torch.max_pool2d(torch.relu(self.conv2(x)), 2)
        x = x.mean(dim=(2, 3))
        return self.fc2(torch.relu(self.fc1(x)))


def load_split(data_dir, part):
    """Images in [0, 1] ([n, 1, 28, 28]) and labels, as `fusion export-data` writes them."""
    import os

    import numpy as np

    images = np.load(os.path.join(data_dir, f"{part}-images.npy"))
    labels = np.load(os.path.join(data_dir, f"{part}-labels.npy"))
    return torch.from_numpy(images).float() / 255.0, torch.from_numpy(labels).long()
