"""Export a checkpoint to one self-contained ONNX file and check it against PyTorch with onnxruntime.

The file has a dynamic batch dimension, named input and output (images, logits) and metadata (test
accuracy, normalisation, source checkpoint, and test_time_views: 5 when the graph averages the
logits over the image and its four one-pixel shifts, 1 when it reads the image alone; by default
the checkpoint's recipe decides). After
writing it, the export checks its own output: onnx's full checker, then onnxruntime against PyTorch
on all 10,000 test images, both in float32. A failed check removes the file and exits with status 1.
With --site DIR it writes the static drawing site instead (mnist_cnn/site.py): the page, the checked
model as DIR/model.onnx and onnxruntime-web's files (run npm ci first); a failed check leaves no site.
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from mnist_cnn.checkpoint import load_checkpoint, newest_checkpoint, views_to_read
from mnist_cnn.cli import RunFailed, add_views_option, reports_errors
from mnist_cnn.data import MNIST_MEAN, MNIST_STD, add_data_option, load_mnist
from mnist_cnn.files import check_writable_folder, staged, staged_folder
from mnist_cnn.inference import with_views
from mnist_cnn.onnx_model import OnnxFileError, onnx_logits, onnx_session, read_onnx
from mnist_cnn.site import MODEL_FILE, SiteError, check_site_folder, lay_out, runtime_version, site_bytes
from model import INPUT_SHAPE

MIN_AGREEMENT = 0.9995
MAX_LOGIT_DIFFERENCE = 1e-3
CHECK_BATCH_SIZE = 1000
INPUT_NAME, OUTPUT_NAME = "images", "logits"


class ExportCheckError(RunFailed):
    """The exported file fails one of its checks."""


def stored_accuracy_key(views: int) -> str:
    """Return the key of a checkpoint's metrics that holds the test accuracy with views views."""
    return "test_accuracy" if views > 1 else "test_accuracy_one_view"


def onnx_bytes(model: nn.Module, views: int, metadata: dict) -> bytes:
    """Return model, reading views views of each image, exported by torch.onnx's dynamo exporter as one ONNX file
    with a dynamic batch and metadata.
    """
    model = with_views(model.float().to(memory_format=torch.contiguous_format), views).eval()
    example = torch.zeros(2, *INPUT_SHAPE)
    program = torch.onnx.export(
        model,
        (example,),
        dynamo=True,
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_shapes={"images": {0: torch.export.Dim("batch")}},
        verbose=False,
    )
    proto = program.model_proto
    for node in proto.graph.node:
        del node.metadata_props[:]  # the exporter's notes: source lines and the folder it ran in, which the file leaks
    properties = {
        "test_accuracy": str(metadata.get("metrics", {}).get(stored_accuracy_key(views), "unknown")),
        "mean": str(MNIST_MEAN),
        "std": str(MNIST_STD),
        "source_checkpoint": metadata["source_checkpoint"],
        "test_time_views": str(views),
        "input": "images: float32 (batch, 1, 28, 28), pixels in [0, 1] normalised as (x - mean) / std",
    }
    onnx.helper.set_model_props(proto, properties)
    return proto.SerializeToString()


def compare_logits(onnx_all: np.ndarray, torch_all: np.ndarray, truth: np.ndarray) -> dict:
    """Return how onnxruntime's logits agree with PyTorch's and both accuracies; raise ExportCheckError when they
    agree on fewer than MIN_AGREEMENT of the images or differ by more than MAX_LOGIT_DIFFERENCE anywhere.
    """
    figures = {
        "agreement": float((onnx_all.argmax(1) == torch_all.argmax(1)).mean()),
        "max_logit_difference": float(np.abs(onnx_all - torch_all).max()),
        "onnx_accuracy": 100 * float((onnx_all.argmax(1) == truth).mean()),
        "torch_accuracy": 100 * float((torch_all.argmax(1) == truth).mean()),
        "images": len(truth),
    }
    if figures["agreement"] < MIN_AGREEMENT:
        raise ExportCheckError(
            f"onnxruntime and PyTorch agree on {100 * figures['agreement']:.2f}% of the images, "
            f"below {100 * MIN_AGREEMENT:.2f}%"
        )
    if not figures["max_logit_difference"] <= MAX_LOGIT_DIFFERENCE:
        raise ExportCheckError(
            f"the largest logit difference is {figures['max_logit_difference']:.2e}, above {MAX_LOGIT_DIFFERENCE:.0e}"
        )
    return figures


def check_export(path: Path, model: nn.Module, views: int, images: torch.Tensor, labels: torch.Tensor) -> dict:
    """Check the ONNX file at path against model reading views views; return the figures, or raise ExportCheckError
    naming the check that failed.
    """
    try:
        onnx.checker.check_model(str(path), full_check=True)
        data, _ = read_onnx(path)
        onnx_all = onnx_logits(onnx_session(data, str(path)), images.float().contiguous().numpy(), str(path))
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as error:
        raise ExportCheckError(f"onnx.checker rejects the file: {error}") from None
    except OnnxFileError as error:
        raise ExportCheckError(str(error)) from None
    model = with_views(model.float().to(memory_format=torch.contiguous_format), views).eval()
    with torch.inference_mode():
        batches = images.float().contiguous().split(CHECK_BATCH_SIZE)
        torch_all = np.concatenate([model(batch).numpy() for batch in batches])
    return compare_logits(onnx_all, torch_all, labels.numpy())


def export_checkpoint(checkpoint_path: Path, output: Path, views: int | None, data_dir: str) -> dict:
    """Export checkpoint_path, reading views views (None: as its recipe says), to output and check it; return the
    check's figures and the views. A failed check leaves no file.
    """
    cpu = torch.device("cpu")
    model, metadata = load_checkpoint(checkpoint_path, cpu)
    views = views_to_read(views, metadata)
    check_writable_folder(output.parent)
    images, labels = load_mnist(data_dir, train=False, device=cpu)
    data = onnx_bytes(model, views, {**metadata, "source_checkpoint": checkpoint_path.name})
    with staged(output) as unchecked:
        unchecked.write_bytes(data)
        figures = check_export(unchecked, model, views, images, labels)
    return figures | {"bytes": len(data), "views": views}


@reports_errors()
def main(argv: list[str] | None = None) -> int:
    """Run export.py with argv; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, help="checkpoint to export (default: the newest in models/)")
    parser.add_argument("--output", type=Path, help="the .onnx file to write (default: beside the checkpoint)")
    parser.add_argument("--site", type=Path, help="write the static drawing site here instead, its model included")
    add_data_option(parser)
    add_views_option(parser)
    args = parser.parse_args(argv)
    if args.site and args.output:
        raise SiteError("--site writes the model as DIR/model.onnx: give --output or --site, not both")
    checkpoint_path = args.checkpoint or newest_checkpoint()
    try:
        if args.site:
            check_site_folder(args.site)
            runtime_version()
            with staged_folder(args.site) as folder:
                figures = export_checkpoint(checkpoint_path, folder / MODEL_FILE, args.views, args.data_dir)
                lay_out(folder, figures["views"], checkpoint_path.name)
            output = args.site / MODEL_FILE
        else:
            output = args.output or checkpoint_path.with_suffix(".onnx")
            figures = export_checkpoint(checkpoint_path, output, args.views, args.data_dir)
    except ExportCheckError as error:
        written = args.site or args.output or checkpoint_path.with_suffix(".onnx")
        raise ExportCheckError(f"the exported model failed its check, so {written} was not written: {error}") from None
    print(f"onnx file         {output} ({figures['bytes']:,} bytes, {figures['views']} view(s) of each image)")
    print(f"pytorch accuracy  {figures['torch_accuracy']:.2f}%  ({figures['images']:,} test images, float32)")
    print(f"onnx accuracy     {figures['onnx_accuracy']:.2f}%  (onnxruntime, CPU)")
    print(f"same prediction   {100 * figures['agreement']:.2f}% of the images")
    print(f"largest logit difference  {figures['max_logit_difference']:.2e}")
    if args.site:
        files = f"index.html, model.json, {MODEL_FILE}, ort/"
        print(f"site              {args.site}/ ({files}; {site_bytes(args.site):,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
