"""Put plausible bugs into the code one at a time (mutants) and report which test of the suite catches each.

Run it from the repository's root as python -m tools.mutants. It works in a throwaway clone of this
checkout (uncommitted changes included), so the checkout itself is never changed. For each mutant it
runs the fast suite until the first failure; with --run-slow it then runs the heavy tests on the
mutants the fast suite missed. Prints a markdown table; exit status 1 when a mutant survives.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from mnist_cnn.cli import BadInput, reports_errors
from mnist_cnn.data import default_data_dir

ROOT = Path(__file__).resolve().parents[1]
RUN_TIMEOUT_SECONDS = 900


@dataclass(frozen=True)
class Mutant:
    """A plausible bug: in path, the one occurrence of old becomes new."""

    name: str
    area: str
    path: str
    old: str
    new: str


MUTANTS = [
    Mutant("wider model", "model", "model.py", "CHANNELS = (16, 16, 64)", "CHANNELS = (16, 48, 64)"),
    Mutant("budget raised with it", "model", "model.py", "PARAMETER_BUDGET = 25_000", "PARAMETER_BUDGET = 60_000"),
    Mutant(
        "standardisation without the deviation",
        "model",
        "model.py",
        "return centred / (variance.sqrt() + self.eps)",
        "return centred",
    ),
    Mutant(
        "classifier reads channel by channel",
        "model",
        "model.py",
        "return maps.permute(0, 2, 3, 1).flatten(1)",
        "return maps.flatten(1)",
    ),
    Mutant(
        "older checkpoints' classifier not reordered",
        "checkpoint loading",
        "mnist_cnn/checkpoint.py",
        'return state | {"classifier.weight": reordered}',
        "return state",
    ),
    Mutant(
        "older checkpoints loaded unpadded",
        "checkpoint loading",
        "mnist_cnn/checkpoint.py",
        "FIRST_PADDING_BEFORE_RECORDED = 2",
        "FIRST_PADDING_BEFORE_RECORDED = 0",
    ),
    Mutant(
        "validation inside the training images",
        "validation split",
        "mnist_cnn/data.py",
        'return "validation", (images[:-validation], labels[:-validation]),',
        'return "validation", (images, labels),',
    ),
    Mutant(
        "validation as large as the set allowed",
        "validation split",
        "mnist_cnn/data.py",
        "if validation >= len(images):",
        "if validation > len(images):",
    ),
    Mutant(
        "label 10 accepted",
        "data check",
        "mnist_cnn/data.py",
        "if largest >= NUM_CLASSES:",
        "if largest > NUM_CLASSES:",
    ),
    Mutant(
        "checkpoint loaded with pickle",
        "checkpoint safety",
        "mnist_cnn/checkpoint.py",
        "checkpoint = torch.load(path, map_location=device, weights_only=True)",
        "checkpoint = torch.load(path, map_location=device, weights_only=False)",
    ),
    Mutant(
        "sidecars ignored when naming",
        "checkpoint naming",
        "mnist_cnn/checkpoint.py",
        'for extension in (".pt", *SIDECAR_SUFFIXES)',
        'for extension in (".pt",)',
    ),
    Mutant(
        "claim overwrites",
        "checkpoint naming",
        "mnist_cnn/checkpoint.py",
        "        os.link(temporary, path)\n",
        "        os.replace(temporary, path)\n",
    ),
    Mutant(
        "empty claim left behind",
        "checkpoint naming",
        "mnist_cnn/checkpoint.py",
        "        except BaseException:\n            path.unlink()\n            raise",
        "        except BaseException:\n            raise",
    ),
    Mutant(
        "temporary file left behind",
        "whole-file writes",
        "mnist_cnn/files.py",
        "    finally:\n        temporary.unlink(missing_ok=True)",
        "    finally:\n        pass",
    ),
    Mutant(
        "margin doubled",
        "gate thresholds",
        "tools/gate.py",
        "base_mean - head_mean > thresholds.margin + ON_THE_LINE:",
        "base_mean - head_mean > 2 * thresholds.margin:",
    ),
    Mutant(
        "budget reached allowed",
        "gate thresholds",
        "tools/gate.py",
        "if run.numbers >= thresholds.parameter_budget:",
        "if run.numbers > thresholds.parameter_budget:",
    ),
    Mutant(
        "seed floor a point lower",
        "gate thresholds",
        "tools/gate.py",
        "if run.accuracy < thresholds.seed_floor - ON_THE_LINE:",
        "if run.accuracy < thresholds.seed_floor - 1:",
    ),
    Mutant(
        "mean floor a tenth lower",
        "gate thresholds",
        "tools/gate.py",
        "head_mean < thresholds.mean_floor - ON_THE_LINE:",
        "head_mean < thresholds.mean_floor - 0.1:",
    ),
    Mutant(
        "claim tolerance doubled",
        "gate thresholds",
        "tools/gate.py",
        "abs(claimed - run.accuracy) > thresholds.claim_tolerance + ON_THE_LINE:",
        "abs(claimed - run.accuracy) > 2 * thresholds.claim_tolerance:",
    ),
    Mutant(
        "loss claim unchecked",
        "gate thresholds",
        "tools/gate.py",
        "elif abs(claimed_loss - run.loss) > thresholds.claim_loss_tolerance + ON_THE_LINE:",
        "elif False:",
    ),
    Mutant(
        "seed floor on the mean",
        "gate aggregates",
        "tools/gate.py",
        "if run.accuracy < thresholds.seed_floor - ON_THE_LINE:",
        "if statistics.mean(head.accuracies()) < thresholds.seed_floor - ON_THE_LINE:",
    ),
    Mutant(
        "budget on the smallest model",
        "gate aggregates",
        "tools/gate.py",
        "if run.numbers >= thresholds.parameter_budget:",
        "if min(other.numbers or 0 for other in head.runs) >= thresholds.parameter_budget:",
    ),
    Mutant(
        "claims compared on the mean",
        "gate aggregates",
        "tools/gate.py",
        "abs(claimed - run.accuracy) > thresholds.claim_tolerance + ON_THE_LINE:",
        "abs(statistics.mean(head.reported('test_accuracy')) - statistics.mean(head.accuracies()))"
        " > thresholds.claim_tolerance + ON_THE_LINE:",
    ),
    Mutant(
        "seeds counted as at least",
        "gate aggregates",
        "tools/gate.py",
        "if len(head.runs) != thresholds.seeds:",
        "if len(head.runs) < thresholds.seeds:",
    ),
    Mutant(
        "sparse numbers uncounted",
        "trusted count",
        "mnist_cnn/onnx_model.py",
        "            yield from (sparse.values, sparse.indices)\n",
        "            pass\n",
    ),
    Mutant(
        "subgraphs uncounted",
        "trusted count",
        "mnist_cnn/onnx_model.py",
        "        yield graph\n        for node in graph.node:",
        "        yield graph\n        break\n        for node in graph.node:",
    ),
    Mutant(
        "test files unchecked",
        "trusted scoring",
        "tools/gate.py",
        "if hashlib.sha256(path.read_bytes()).hexdigest() != expected:",
        "if False:",
    ),
    Mutant(
        "body limit a hundredfold",
        "server limits",
        "serve.py",
        "if length > MAX_BODY_BYTES:",
        "if length > 100 * MAX_BODY_BYTES:",
    ),
    Mutant(
        "one shift twice",
        "inference views",
        "mnist_cnn/inference.py",
        "TEST_TIME_SHIFTS = ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1))",
        "TEST_TIME_SHIFTS = ((0, 0), (1, 0), (1, 0), (0, 1), (0, -1))",
    ),
    Mutant(
        "first view only",
        "inference views",
        "mnist_cnn/inference.py",
        "return view_logits(self.model, images, len(TEST_TIME_SHIFTS)).mean(0)",
        "return view_logits(self.model, images, len(TEST_TIME_SHIFTS))[0]",
    ),
    Mutant(
        "ink polarity flipped",
        "image preparation",
        "mnist_cnn/digit_image.py",
        "ink = dark_ink if (dark_ink * weight).sum() <= (light_ink * weight).sum() else light_ink",
        "ink = dark_ink if (dark_ink * weight).sum() >= (light_ink * weight).sum() else light_ink",
    ),
    Mutant(
        "size limit tenfold",
        "image preparation",
        "mnist_cnn/digit_image.py",
        "if image.width * image.height > MAX_PIXELS:",
        "if image.width * image.height > 10 * MAX_PIXELS:",
    ),
    Mutant(
        "logit tolerance doubled",
        "export check",
        "export.py",
        'if not figures["max_logit_difference"] <= MAX_LOGIT_DIFFERENCE:',
        'if not figures["max_logit_difference"] <= 2 * MAX_LOGIT_DIFFERENCE:',
    ),
    Mutant(
        "agreement a tenth lower",
        "export check",
        "export.py",
        'if figures["agreement"] < MIN_AGREEMENT:',
        'if figures["agreement"] < MIN_AGREEMENT - 0.0005:',
    ),
    Mutant(
        "zero learning rate accepted",
        "option validation",
        "mnist_cnn/cli.py",
        "float, lambda value: math.isfinite(value) and value > 0,",
        "float, lambda value: math.isfinite(value) and value >= 0,",
    ),
    Mutant(
        "momentum 1 accepted",
        "option validation",
        "mnist_cnn/recipe.py",
        '"muon_momentum": finite_between(0, 1, high_open=True),',
        '"muon_momentum": finite_between(0, 1),',
    ),
    Mutant(
        "only NaN is divergence",
        "divergence",
        "train.py",
        "if not torch.isfinite(loss_sum):",
        "if torch.isnan(loss_sum):",
    ),
    Mutant(
        "diverged trial scored",
        "divergence",
        "tune.py",
        'raise optuna.TrialPruned(trial.user_attrs["outcome"]) from None',
        "return 0.0",
    ),
    Mutant(
        "width up to 5",
        "recipe lines",
        "mnist_cnn/recipe.py",
        '"width": finite_between(0, 4, low_open=True),',
        '"width": finite_between(0, 5, low_open=True),',
    ),
    Mutant(
        "label smoothing ignored",
        "recipe settings",
        "mnist_cnn/step.py",
        "return logits, F.cross_entropy(logits, targets, label_smoothing=label_smoothing)",
        "return logits, F.cross_entropy(logits, targets)",
    ),
    Mutant(
        "weight decay ignored",
        "recipe settings",
        "mnist_cnn/optim.py",
        "self.adamw = AdamW(adamw_params, recipe.weight_decay)",
        "self.adamw = AdamW(adamw_params, 1e-4)",
    ),
    Mutant(
        "Muon's warm-up ignored",
        "recipe settings",
        "mnist_cnn/optim.py",
        "OneCycle(recipe.muon_lr, total_steps, recipe.warmup_fraction)",
        "OneCycle(recipe.muon_lr, total_steps, 0.25)",
    ),
    Mutant(
        "AdamW's steps not counted",
        "recipe settings",
        "mnist_cnn/optim.py",
        "torch._foreach_add_(steps, 1)",
        "steps = [step.fill_(1) for step in steps]",
    ),
    Mutant(
        "AdamW's beta1 held still",
        "recipe settings",
        "mnist_cnn/optim.py",
        "begin, end = (HIGH_BETA1, LOW_BETA1) if warming_up else (LOW_BETA1, HIGH_BETA1)",
        "begin, end = (LOW_BETA1, LOW_BETA1)",
    ),
    Mutant(
        "hard-example share ignored mid-run",
        "recipe settings",
        "train.py",
        "order = redraw_after(order, step * batch_size, example_losses, recipe.hard_example_share, generator)",
        "order = redraw_after(order, step * batch_size, example_losses, 0.5, generator)",
    ),
    Mutant(
        "hard examples ranked by their raw loss",
        "recipe settings",
        "mnist_cnn/hard_examples.py",
        "return losses / losses.mean().clamp_min(TINY_SUM) if relative else losses",
        "return losses",
    ),
    Mutant(
        "test-time views ignored",
        "recipe settings",
        "train.py",
        "scored, one_view = score_views(fitted.model, eval_images, eval_labels, amp_dtype, recipe.test_time_views, "
        "progress)",
        "scored, one_view = score_views(fitted.model, eval_images, eval_labels, amp_dtype, 5, progress)",
    ),
    Mutant(
        "long settings from two epochs",
        "recipe length table",
        "mnist_cnn/recipe.py",
        "    (\n        3,\n",
        "    (\n        2,\n",
    ),
    Mutant(
        "hard examples one epoch late",
        "recipe length table",
        "mnist_cnn/hard_examples.py",
        "return 0 if epoch >= recipe.epochs * recipe.hard_examples_from else None",
        "return 0 if epoch > recipe.epochs * recipe.hard_examples_from else None",
    ),
    Mutant(
        "search scores on the test set",
        "search split",
        "tune.py",
        "load_training_and_scoring_sets(search.data_dir, CPU, search.validation)",
        "load_training_and_scoring_sets(search.data_dir, CPU, None)",
    ),
    Mutant(
        "budget unchecked in the search",
        "search budget",
        "tune.py",
        "if parameters > search.max_parameters:",
        "if parameters > search.max_parameters + 1_000_000:",
    ),
    Mutant(
        "one standard error enough",
        "search verdict",
        "mnist_cnn/search_report.py",
        "if mean - 2 * error > 0",
        "if mean - error > 0",
    ),
]


def clone_checkout(folder: Path) -> None:
    """Clone this checkout into folder and lay its working tree's files (committed or not, not ignored) on top."""
    subprocess.run(["git", "clone", "--quiet", "--shared", str(ROOT), str(folder)], check=True)
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
        text=True,
    ).stdout
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, folder / name)


def first_failure(folder: Path, slow: bool) -> str | None:
    """Run the fast suite (or with slow the heavy tests alone) in folder until the first failure; return that
    test's id, or None when every test passed.
    """
    command = [sys.executable, "-m", "pytest", "tests/", "-x", "-q", "-rfE", "-p", "no:cacheprovider"]
    command += ["--ignore", "tests/test_mutants.py"]  # it checks that each mutant's code is there, so fails on each
    command += ["--run-slow", "-m", "slow"] if slow else []
    result = subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=RUN_TIMEOUT_SECONDS)
    if result.returncode == 0:
        return None
    failed = re.search(r"^(?:FAILED|ERROR) (\S+)", result.stdout, re.MULTILINE)
    return failed.group(1) if failed else f"pytest exit {result.returncode}: {result.stdout.strip()[-200:]}"


def run_mutant(folder: Path, mutant: Mutant, run_slow: bool) -> tuple[str | None, str | None, float]:
    """Apply mutant in folder, find the first test that fails on the fast suite and, if none and run_slow, on the
    heavy tests; undo it; return both answers and the seconds it took.
    """
    path = folder / mutant.path
    original = path.read_text()
    if original.count(mutant.old) != 1:
        raise BadInput(f"mutant {mutant.name!r}: its code occurs {original.count(mutant.old)} times in {mutant.path}")
    start = time.perf_counter()
    try:
        path.write_text(original.replace(mutant.old, mutant.new))
        fast = first_failure(folder, slow=False)
        slow = first_failure(folder, slow=True) if fast is None and run_slow else None
    finally:
        path.write_text(original)
    return fast, slow, time.perf_counter() - start


@reports_errors(interrupted="no table written; the checkout was never changed")
def main(argv: list[str] | None = None) -> int:
    """Run tools/mutants.py with argv; return the exit status (1 when a mutant survives)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-slow", action="store_true", help="also run the heavy tests on the mutants that survive")
    parser.add_argument("--only", action="append", metavar="NAME", help="run only the mutant of this name; repeatable")
    args = parser.parse_args(argv)
    chosen = [mutant for mutant in MUTANTS if not args.only or mutant.name in args.only]
    if unknown := set(args.only or []) - {mutant.name for mutant in MUTANTS}:
        raise BadInput(f"--only: no mutant named {', '.join(sorted(unknown))}")
    os.environ["MNIST_DATA_DIR"] = str(Path(default_data_dir()).resolve())
    rows, survivors, caught_fast = [], 0, 0
    with tempfile.TemporaryDirectory(prefix="mutants-") as temporary:
        folder = Path(temporary) / "checkout"
        clone_checkout(folder)
        for number, mutant in enumerate(chosen, 1):
            fast, slow, seconds = run_mutant(folder, mutant, args.run_slow)
            caught_fast += fast is not None
            survivors += fast is None and slow is None
            verdict = f"fast: {fast}" if fast else f"slow: {slow}" if slow else "SURVIVED"
            print(f"{number}/{len(chosen)} {mutant.name}: {verdict} ({seconds:.0f} s)", file=sys.stderr, flush=True)
            rows.append(f"| {mutant.area} | {mutant.name} | `{mutant.path}` | {fast or '-'} | {slow or '-'} |")
    print("| area | mutant | file | caught by the fast suite | caught by the heavy tests |")
    print("| --- | --- | --- | --- | --- |")
    print("\n".join(rows))
    print(
        f"\nfast suite: {caught_fast} of {len(chosen)} caught; whole suite: {len(chosen) - survivors} of {len(chosen)}"
    )
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
