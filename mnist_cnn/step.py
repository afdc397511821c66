"""One training step of the recipe: eager, or on CUDA replayed as a captured graph, which saves most launches."""

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from mnist_cnn.optim import ScheduledOptimizers
from mnist_cnn.recipe import Recipe

EAGER_STEPS_BEFORE_CAPTURE = 3

Step = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def forward_loss(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    label_smoothing: float,
    amp_dtype: torch.dtype | None,
    cache: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the logits of model on inputs and the label-smoothed cross-entropy loss, under autocast when given."""
    with torch.autocast(inputs.device.type, dtype=amp_dtype, enabled=amp_dtype is not None, cache_enabled=cache):
        logits = model(inputs)
        return logits, F.cross_entropy(logits, targets, label_smoothing=label_smoothing)


def eager_step(
    model: nn.Module,
    optimizers: ScheduledOptimizers,
    label_smoothing: float,
    amp_dtype: torch.dtype | None,
    free_gradients: bool = True,
) -> Step:
    """Return a step that trains model on one batch and returns its logits and loss."""

    def step(inputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, loss = forward_loss(model, inputs, targets, label_smoothing, amp_dtype)
        model.zero_grad(set_to_none=free_gradients)
        loss.backward()
        optimizers.step()
        return logits, loss.detach()

    return step


class GraphedStep:
    """A CUDA training step: forward, backward and the Muon step captured once as a CUDA graph and replayed.

    The first EAGER_STEPS_BEFORE_CAPTURE full batches train eagerly on a side stream, as capture requires; then
    one full batch is captured and every later full batch is copied into the captured inputs and
    replayed. Before each replay Muon's learning rate is written into the device tensor that the
    captured step reads; AdamW steps eagerly after it. A batch of another size (a last partial
    batch) trains eagerly, keeping the captured gradients in place.
    """

    def __init__(
        self, model: nn.Module, optimizers: ScheduledOptimizers, recipe: Recipe, amp_dtype: torch.dtype | None
    ) -> None:
        self.model, self.optimizers, self.amp_dtype = model, optimizers, amp_dtype
        self.batch_size, self.label_smoothing = recipe.batch_size, recipe.label_smoothing
        self.muon_rate = torch.zeros((), device=next(model.parameters()).device)
        self.warmed = 0
        self.graph: torch.cuda.CUDAGraph | None = None

    def capture(self, inputs: torch.Tensor, targets: torch.Tensor) -> None:
        """Record forward, backward and the Muon step on copies of inputs and targets, which replays reuse."""
        self.inputs, self.targets = inputs.clone(), targets.clone()
        self.model.zero_grad(set_to_none=True)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            logits, loss = forward_loss(
                self.model, self.inputs, self.targets, self.label_smoothing, self.amp_dtype, cache=False
            )
            loss.backward()
            self.optimizers.muon.step(self.muon_rate)
        self.logits, self.loss = logits, loss.detach()

    def __call__(self, inputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Train on one batch; return its logits and loss (for a replay, buffers that the next replay overwrites)."""
        if len(inputs) != self.batch_size:
            last_step = eager_step(
                self.model, self.optimizers, self.label_smoothing, self.amp_dtype, free_gradients=self.graph is None
            )
            return last_step(inputs, targets)
        if self.warmed < EAGER_STEPS_BEFORE_CAPTURE:
            self.warmed += 1
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                result = eager_step(self.model, self.optimizers, self.label_smoothing, self.amp_dtype)(inputs, targets)
            torch.cuda.current_stream().wait_stream(side)
            return result
        if self.graph is None:
            self.capture(inputs, targets)
        self.inputs.copy_(inputs)
        self.targets.copy_(targets)
        self.muon_rate.fill_(self.optimizers.muon_rate())
        self.graph.replay()
        self.optimizers.step(muon=False)
        return self.logits, self.loss


def make_step(model: nn.Module, optimizers: ScheduledOptimizers, recipe: Recipe, amp_dtype: torch.dtype | None) -> Step:
    """Return the recipe's training step for model's device: replayed as a CUDA graph on CUDA, eager elsewhere."""
    if next(model.parameters()).device.type == "cuda":
        return GraphedStep(model, optimizers, recipe, amp_dtype)
    return eager_step(model, optimizers, recipe.label_smoothing, amp_dtype)
