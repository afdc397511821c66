"""MnistCNN: a small convolutional network for 28x28 MNIST digits, under 25,000 parameters."""

import torch
import torch.nn.functional as F
from torch import nn

INPUT_SHAPE = (1, 28, 28)
NUM_CLASSES = 10
PARAMETER_BUDGET = 25_000
TEST_TIME_SHIFTS = ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1))


def shifted_views(images: torch.Tensor, shifts: tuple[tuple[int, int], ...] = TEST_TIME_SHIFTS) -> torch.Tensor:
    """Return the images moved by each (rows, columns) shift of at most one pixel, edges repeated, as one batch."""
    padded = F.pad(images, (1, 1, 1, 1), mode="replicate")
    height, width = images.shape[-2:]
    views = [padded[:, :, 1 - down : 1 - down + height, 1 - right : 1 - right + width] for down, right in shifts]
    return torch.cat(views).contiguous(memory_format=torch.channels_last)


def conv_pool_bn_relu(in_channels: int, out_channels: int) -> list[nn.Module]:
    """Return a 3x3 convolution followed by 2x2 max pooling, then batch norm and ReLU on the smaller map."""
    return [
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.MaxPool2d(2),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]


class PerImageStandardize(nn.Module):
    """Give each image zero mean and unit variance, so that brightness and contrast cannot move the input.

    Its buffer marks the architecture: a checkpoint of a model without this layer fails to load.
    """

    def __init__(self, eps: float = 1e-3) -> None:
        super().__init__()
        self.register_buffer("eps", torch.tensor(eps))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Return images standardised one by one."""
        mean = images.mean((1, 2, 3), keepdim=True)
        std = images.std((1, 2, 3), keepdim=True)
        return (images - mean) / (std + self.eps)


class MnistCNN(nn.Module):
    """Map images of shape (N, 1, 28, 28), normalised with MNIST's mean and std, to logits of shape (N, 10).

    The first layer is a 5x5 convolution with stride 2, or with full_resolution a 3x3 convolution
    at 28x28, max-pooled, with batch norm: more work per image, which runs of several epochs can
    afford. In eval mode the logits are the mean over the image and its four one-pixel shifts
    (test-time augmentation); in training mode they are those of the image alone.
    """

    def __init__(self, full_resolution: bool = False) -> None:
        super().__init__()
        self.full_resolution = full_resolution
        if full_resolution:
            first_layer = conv_pool_bn_relu(1, 16)
        else:
            first_layer = [nn.Conv2d(1, 16, kernel_size=5, stride=2, padding=2), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(
            PerImageStandardize(),
            *first_layer,  # 14x14
            *conv_pool_bn_relu(16, 32),  # 7x7
            *conv_pool_bn_relu(32, 48),  # 3x3
        )
        self.classifier = nn.Linear(48 * 3 * 3, NUM_CLASSES)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Return the logits for a batch of images; raise ValueError for any other input shape."""
        if images.dim() != 4 or tuple(images.shape[1:]) != INPUT_SHAPE or images.shape[0] < 1:
            raise ValueError(f"MnistCNN expects input of shape (N, 1, 28, 28) with N >= 1, got {tuple(images.shape)}")
        if self.training:
            return self.single_view_logits(images)
        views = self.single_view_logits(shifted_views(images))
        return views.unflatten(0, (len(TEST_TIME_SHIFTS), -1)).mean(0)

    def single_view_logits(self, images: torch.Tensor) -> torch.Tensor:
        """Return the logits of each image alone, without test-time augmentation."""
        return self.classifier(self.features(images).flatten(1))


def count_parameters(model: nn.Module) -> int:
    """Return the number of trainable parameters of model."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
