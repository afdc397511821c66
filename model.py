"""MnistCNN: a small convolutional network for 28x28 MNIST digits, under 25,000 parameters."""

import torch
from torch import nn

IMAGE_SIDE = 28
INPUT_SHAPE = (1, IMAGE_SIDE, IMAGE_SIDE)
NUM_CLASSES = 10
PARAMETER_BUDGET = 25_000
CHANNELS = (16, 16, 64)
FIRST_PADDING = 0  # the strided first layer's: 0 gives maps of 12x12, then 6x6 and 3x3; 2 gives 14x14, 7x7, 3x3
FIRST_PADDINGS = (0, 1, 2)  # more than half the 5x5 kernel would only add rows of zeros


def check_input_shape(images: torch.Tensor) -> None:
    """Raise ValueError unless images is a batch of shape (N, 1, 28, 28) with N >= 1."""
    if images.dim() != 4 or tuple(images.shape[1:]) != INPUT_SHAPE or images.shape[0] < 1:
        raise ValueError(f"MnistCNN expects input of shape (N, 1, 28, 28) with N >= 1, got {tuple(images.shape)}")


def is_channel_counts(value: object) -> bool:
    """Return whether value is a tuple of three whole numbers of at least 1, as the model's channels must be."""
    is_counts = isinstance(value, tuple) and len(value) == 3
    return is_counts and all(type(count) is int and count >= 1 for count in value)


def is_first_padding(value: object) -> bool:
    """Return whether value is a whole number in FIRST_PADDINGS (not a bool or a float that equals one)."""
    return type(value) is int and value in FIRST_PADDINGS


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
        """Return images standardised one by one: minus their mean, over their standard deviation (n - 1) plus eps.

        The deviation is summed from the centred pixels, eight times faster on the CPU than Tensor.std.
        """
        centred = images - images.mean((1, 2, 3), keepdim=True)
        variance = centred.square().sum((1, 2, 3), keepdim=True) / (images[0].numel() - 1)
        return centred / (variance.sqrt() + self.eps)


class FlattenChannelsLast(nn.Module):
    """Flatten maps of shape (N, C, H, W) to (N, H * W * C), reading each position's channels together.

    Channels-last maps (as training keeps them) flatten without a copy, and their gradients come back
    channels-last, so that the backward pass of the layers before never mixes memory layouts, which
    is slow on a CPU (docs/experiments.md).
    """

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        """Return maps flattened position by position, each position's channels in order."""
        return maps.permute(0, 2, 3, 1).flatten(1)


class MnistCNN(nn.Module):
    """Map images of shape (N, 1, 28, 28), normalised with MNIST's mean and std, to logits of shape (N, 10).

    The first layer is a 5x5 convolution with stride 2 and first_padding (FIRST_PADDINGS) pixels of zero
    padding, giving maps of 12x12 (unpadded) to 14x14; or with full_resolution a 3x3 convolution at
    28x28, max-pooled to 14x14, with batch norm: more work per image, which runs of several epochs
    can afford (mnist_cnn/recipe.py says which run gets which). Two more convolutions, each max-pooled,
    end at 3x3. channels are the widths of the three convolutions.
    """

    def __init__(
        self,
        full_resolution: bool = False,
        channels: tuple[int, int, int] = CHANNELS,
        first_padding: int = FIRST_PADDING,
    ) -> None:
        super().__init__()
        channels = tuple(channels) if isinstance(channels, list) else channels  # as JSON and checkpoints hold them
        if type(full_resolution) is not bool:
            raise ValueError(f"full_resolution must be True or False, got {full_resolution!r}")
        if not is_channel_counts(channels):
            raise ValueError(f"channels must be three whole numbers of at least 1, got {channels!r}")
        if not is_first_padding(first_padding):
            raise ValueError(f"first_padding must be one of {FIRST_PADDINGS}, got {first_padding!r}")
        self.full_resolution, self.channels, self.first_padding = full_resolution, channels, first_padding
        first, second, third = channels
        if full_resolution:
            first_layer = conv_pool_bn_relu(1, first)
        else:
            first_layer = [nn.Conv2d(1, first, kernel_size=5, stride=2, padding=first_padding), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(
            PerImageStandardize(),
            *first_layer,
            *conv_pool_bn_relu(first, second),
            *conv_pool_bn_relu(second, third),
        )
        self.flatten = FlattenChannelsLast()
        self.classifier = nn.Linear(3 * 3 * third, NUM_CLASSES)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Return the logits of each image; raise ValueError for any other input shape."""
        check_input_shape(images)
        return self.classifier(self.flatten(self.features(images)))


def count_parameters(model: nn.Module) -> int:
    """Return the number of trainable parameters of model."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
