"""Search the recipe on the validation split with Optuna: trials of K seeds each, on one machine or many.

A study lives in a journal file (runs/tune/NAME.journal) or in the PostgreSQL database --storage names,
through which the same command on many machines joins one study. Each worker runs study.optimize until
the study holds --trials finished trials (workers at once may overshoot by up to one each but the last,
optuna#2907). The same command continues a study after Ctrl-C or a crash; a killed worker's trial is
failed and queued again (PostgreSQL: Optuna's heartbeat; a journal file: the lock each worker holds). Then
the best recipe and the default train on new seeds, paired, before the winner's command. With --cost flops the
search has two objectives, validation accuracy and the floating-point operations of training
(mnist_cnn/cost.py), and keeps their Pareto front; the recipe confirmed is the cheapest on the front that
reaches --target, or the most accurate. The test set is never read.
"""

import argparse
import contextlib
import json
import multiprocessing
import os
import random
import signal
import statistics
import sys
import time
import uuid
import warnings
from dataclasses import asdict, replace
from pathlib import Path

import filelock
import optuna
import sqlalchemy
import torch
from optuna.trial import TrialState
from tqdm import tqdm

import train
from mnist_cnn import cli
from mnist_cnn.cost import training_flops
from mnist_cnn.data import add_data_option, load_training_and_scoring_sets
from mnist_cnn.device import autocast_dtype, keep_freed_memory
from mnist_cnn.files import check_writable_folder, write_file
from mnist_cnn.recipe import SEARCH_SPACE, STEP_OF_INTS, Recipe, build_model, recipe_for
from mnist_cnn.scoring import score_views
from mnist_cnn.search_report import report_markdown, write_pictures
from model import PARAMETER_BUDGET, count_parameters

TUNE_DIR = Path("runs") / "tune"
CONFIRMATION_SEED = 1000  # the paired confirmation trains seeds from here; the search uses 0 to K-1
HEARTBEAT_SECONDS = 20  # PostgreSQL: a running trial's worker writes a heartbeat this often
GRACE_SECONDS = 60  # ... a trial without one for this long is failed and queued again (journal: without a worker)
MAX_RETRIES = 3  # ... at most this many times
DATABASE_ATTEMPTS = 5
FINISHED_STATES = (TrialState.COMPLETE, TrialState.PRUNED)
ON_THE_TARGET = 1e-9  # a mean accuracy this close to --target reaches it (99.19 and 99.21 average to 99.19999...)
CPU = torch.device("cpu")  # trials train on the CPU, each worker on its share of the cores


warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # TPE's constant_liar


class TuneError(cli.BadInput):
    """The search cannot start or continue as asked: bad options, storage, study or budget."""


def signature(search: argparse.Namespace) -> dict:
    """Return what makes two runs of the command the same study: its options and the recipe it starts from."""
    keys = ("seeds", "epochs", "space", "max_parameters", "validation", "train_images", "cost")
    made = {key: getattr(search, key) for key in keys} | {"base": asdict(default_recipe(search))}
    return json.loads(json.dumps(made))


def default_recipe(search: argparse.Namespace) -> Recipe:
    """Return the recipe the search starts from: recipe_for(epochs), narrowed to the parameter budget if needed."""
    recipe = recipe_for(search.epochs)
    while parameters_of(recipe) > search.max_parameters and recipe.width > 0.05:
        recipe = replace(recipe, width=round(recipe.width - 0.05, 2))
    return recipe


def parameters_of(recipe: Recipe) -> int:
    """Return the trainable parameters of the model that recipe trains."""
    return count_parameters(build_model(recipe))


def parse_range(text: str) -> tuple[str, tuple[float, float]]:
    """Parse FIELD=LOW:HIGH for --range."""
    name, _, bounds = text.partition("=")
    low, _, high = bounds.partition(":")
    try:
        values = float(low), float(high)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected FIELD=LOW:HIGH, got {text!r}") from None
    if name not in SEARCH_SPACE or not values[0] < values[1]:
        raise argparse.ArgumentTypeError(f"expected FIELD=LOW:HIGH with LOW < HIGH and FIELD searched, got {text!r}")
    return name, values


at_least_two = cli.checked_number(int, lambda value: value >= 2, "must be at least 2 (one cannot tell)", "a number")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse tune.py's command line: what a study searches (space) and how; raise TuneError for unsearched fields."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--study", help="the study's name (default: recipe-<epochs>ep)")
    add("--storage", help="a PostgreSQL URL (postgresql://user@host/db) or a journal file (runs/tune/NAME.journal)")
    overshoot = "workers at once may overshoot it by up to --workers less one"
    add("--trials", type=cli.positive_int, default=40, help=f"finished trials of the study; {overshoot} (default: 40)")
    add("--workers", type=cli.positive_int, default=1, help="worker processes on this machine (default: 1)")
    add("--seeds", type=cli.positive_int, default=2, help="seeds a trial trains; it scores their mean (default: 2)")
    add("--epochs", type=cli.positive_int, default=1, help="epochs of every trial (default: 1)")
    add("--fields", help=f"comma-separated fields to search (default: all: {','.join(SEARCH_SPACE)})")
    add("--range", action="append", default=[], type=parse_range, metavar="FIELD=LOW:HIGH", help="narrow a field")
    add("--max-parameters", type=cli.positive_int, default=PARAMETER_BUDGET - 1, help="parameter budget of a recipe")
    add("--validation", type=cli.positive_int, default=10_000, help="held-out training images (default: 10,000)")
    add("--train-images", type=cli.positive_int, help="train on the first N images only, for quick tries")
    add("--confirm-seeds", type=at_least_two, default=4, help="new seeds of the paired confirmation (default: 4)")
    add("--cost", choices=["flops"], help="also minimise the floating-point operations of training (default: off)")
    add(
        "--target",
        type=cli.percentage,
        help="with --cost: confirm the cheapest recipe that reaches this validation "
        "accuracy, in %% (default: the most accurate)",
    )
    add_data_option(parser)
    add("--out-dir", type=Path, help="folder for the report and pictures (default: runs/tune/NAME)")
    args = parser.parse_args(argv)
    fields = args.fields.split(",") if args.fields else list(SEARCH_SPACE)
    unknown = [name for name in fields if name not in SEARCH_SPACE]
    if unknown or not fields:
        raise TuneError(f"--fields: {', '.join(unknown) or 'none'} not searched; choose from {', '.join(SEARCH_SPACE)}")
    if args.target is not None and not args.cost:
        raise TuneError("--target picks a point of the front of accuracy against cost: give --cost flops with it")
    ranges = dict(args.range)
    if unsearched := [name for name in ranges if name not in fields]:
        raise TuneError(
            f"--range {', '.join(unsearched)}: not among --fields {','.join(fields)}; add it or drop the range"
        )
    args.space = {name: [*ranges.get(name, SEARCH_SPACE[name][:2]), SEARCH_SPACE[name][2]] for name in fields}
    args.study = args.study or f"recipe-{args.epochs}ep"
    args.storage = args.storage or str(TUNE_DIR / f"{args.study}.journal")
    args.out_dir = args.out_dir or TUNE_DIR / args.study
    return args


def check_budget(search: argparse.Namespace) -> None:
    """Raise TuneError when even the narrowest model of the search space breaks the parameter budget."""
    low_width = search.space["width"][0] if "width" in search.space else default_recipe(search).width
    smallest = parameters_of(replace(recipe_for(search.epochs), width=low_width))
    if smallest > search.max_parameters:
        raise TuneError(
            f"no recipe of this search meets --max-parameters {search.max_parameters:,}: the narrowest (width "
            f"{low_width:g}) has {smallest:,}; search a lower width with --range width=LOW:HIGH"
        )


def open_storage(url: str) -> optuna.storages.BaseStorage:
    """Return the study's storage: PostgreSQL for a postgresql:// URL, else a journal file at that path."""
    if url.startswith(("postgresql://", "postgresql+psycopg://")):
        return database_storage(url.replace("postgresql://", "postgresql+psycopg://", 1))
    if "://" in url:
        raise TuneError(f"--storage {url}: unknown kind; give a PostgreSQL URL (postgresql://...) or a journal file")
    path = Path(url)
    check_writable_folder(path.parent)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The open lock works where symbolic links need a privilege (Windows; optuna#4298).
    backend = optuna.storages.journal.JournalFileBackend(url, lock_obj=optuna.storages.journal.JournalFileOpenLock(url))
    return optuna.storages.JournalStorage(backend)


def database_storage(url: str) -> optuna.storages.RDBStorage:
    """Return Optuna's storage in PostgreSQL, whose heartbeat fails and retries a killed worker's trial; retry when
    workers started together race to create its tables (optuna#1092), and raise TuneError when it is unreachable.
    """
    for attempt in range(DATABASE_ATTEMPTS):
        try:
            return optuna.storages.RDBStorage(
                url,
                engine_kwargs={"connect_args": {"connect_timeout": 10}},
                heartbeat_interval=HEARTBEAT_SECONDS,
                grace_period=GRACE_SECONDS,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(MAX_RETRIES),
            )
        except sqlalchemy.exc.OperationalError as error:
            reason = str(error.orig).strip().splitlines()[0] if error.orig else type(error).__name__
            raise TuneError(f"cannot reach the database {safe_storage(url)}: {reason}") from None
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError):
            time.sleep(0.2 * (attempt + 1) + random.random() / 5)
    raise TuneError(f"cannot create Optuna's tables in {safe_storage(url)} after {DATABASE_ATTEMPTS} attempts")


def safe_storage(storage: str) -> str:
    """Return the storage as a message or report may show it (a database URL without its password)."""
    return sqlalchemy.engine.make_url(storage).render_as_string(hide_password=True) if "://" in storage else storage


def open_study(storage: optuna.storages.BaseStorage, search: argparse.Namespace) -> optuna.Study:
    """Create the study or join it, with TPE told that running trials are pending; raise TuneError, changing
    nothing, when it was made with another search."""
    sampler = optuna.samplers.TPESampler(constant_liar=True)
    if search.study in optuna.get_all_study_names(storage):  # create_study would write to the journal first
        study = optuna.load_study(study_name=search.study, storage=storage, sampler=sampler)
    else:
        directions = ["maximize", "minimize"] if search.cost else ["maximize"]
        study = optuna.create_study(
            study_name=search.study, storage=storage, directions=directions, load_if_exists=True, sampler=sampler
        )
    made_with = study.user_attrs.get("search")
    if made_with is None:
        study.set_user_attr("search", signature(search))
    elif made_with != signature(search):
        raise TuneError(
            f"study {search.study} exists in {safe_storage(search.storage)} with another search "
            f"({json.dumps(made_with)}); continue it with the same options or choose another --study"
        )
    return study


def finished(study: optuna.Study) -> int:
    """Return the number of trials that finished: trained, or pruned for the budget or divergence."""
    return len(study.get_trials(deepcopy=False, states=FINISHED_STATES))


def lock_path(storage: str, worker: str) -> Path:
    """Return the lock file of a worker of the journal file storage."""
    return Path(f"{storage}.worker-{worker}.lock")


def requeue_dead_trials(study: optuna.Study, storage: str) -> None:
    """Fail and queue again each running trial of a journal file whose worker's lock is free (the worker is gone),
    or that named no worker within GRACE_SECONDS.
    """
    if "://" in storage:
        return  # PostgreSQL: Optuna's heartbeat does this
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = trial.user_attrs.get("worker")
        try:
            if worker is None and time.time() - trial.datetime_start.timestamp() < GRACE_SECONDS:
                continue
            if worker is not None:
                with filelock.FileLock(lock_path(storage, worker), timeout=0):  # taken at once: its worker is gone
                    pass
                lock_path(storage, worker).unlink(missing_ok=True)
            study.tell(trial.number, state=TrialState.FAIL)
        except (filelock.Timeout, ValueError):  # ValueError: another process failed it first, and queued it again
            continue
        study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number}, skip_if_exists=False)


def suggest(trial: optuna.Trial, space: dict) -> dict:
    """Return the trial's value for each searched field."""
    return {
        name: trial.suggest_int(name, int(low), int(high), step=STEP_OF_INTS.get(name, 1))
        if scale == "int"
        else trial.suggest_float(name, low, high, log=scale == "log")
        for name, (low, high, scale) in space.items()
    }


def train_and_score(recipe: Recipe, data: tuple) -> tuple[float, float]:
    """Train recipe on data's training images; return its validation accuracy with the recipe's views and with one."""
    (train_images, train_labels), (images, labels) = data
    model = train.fit(recipe, train_images, train_labels).model
    scored, one_view = score_views(model, images, labels, autocast_dtype(images.device), recipe.test_time_views)
    return scored.accuracy, one_view.accuracy


def objective(trial: optuna.Trial, search: argparse.Namespace, data: tuple, worker: str) -> float | tuple:
    """Return the mean validation accuracy of the trial's recipe over the seeds, and with --cost its training's
    floating-point operations; prune it, with the reason in its outcome, when it breaks the parameter budget or
    diverges.
    """
    trial.set_user_attr("worker", worker)
    recipe = replace(default_recipe(search), **suggest(trial, search.space))
    parameters = parameters_of(recipe)
    trial.set_user_attr("parameters", parameters)
    if parameters > search.max_parameters:
        trial.set_user_attr("outcome", f"over the parameter budget ({parameters:,})")
        raise optuna.TrialPruned(trial.user_attrs["outcome"])
    results = []
    for seed in range(search.seeds):
        try:
            results.append(train_and_score(replace(recipe, seed=seed), data))
        except train.DivergenceError:
            trial.set_user_attr("outcome", f"diverged (seed {seed})")
            raise optuna.TrialPruned(trial.user_attrs["outcome"]) from None
    trial.set_user_attr("outcome", "trained")
    trial.set_user_attr("accuracy_one_view", statistics.mean(one for _, one in results))
    trial.set_user_attr("flops", training_flops(recipe, len(data[0][0])))
    accuracy = statistics.mean(accuracy for accuracy, _ in results)
    return (accuracy, trial.user_attrs["flops"]) if search.cost else accuracy


def load_data(search: argparse.Namespace) -> tuple:
    """Return (training images, labels) and (validation images, labels) as the search says, on the CPU."""
    _, train_set, validation_set = load_training_and_scoring_sets(search.data_dir, CPU, search.validation)
    return tuple(part[: search.train_images] for part in train_set), validation_set


def stop_worker(signum: int, frame: object) -> None:
    """End a worker the main process stops (SIGTERM): locks freed, its trial left running to be queued again."""
    raise SystemExit(128 + signum)


def work(search: argparse.Namespace, threads: int) -> None:
    """One worker: optimize until the study holds --trials finished trials; on Ctrl-C the main process stops it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(threads)
    keep_freed_memory()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = open_study(open_storage(search.storage), search)
    data, worker = load_data(search), uuid.uuid4().hex[:12]
    journal_lock = filelock.FileLock(lock_path(search.storage, worker))  # a file only once acquired
    lock = journal_lock if "://" not in search.storage else contextlib.nullcontext()
    signal.signal(signal.SIGTERM, stop_worker)
    try:
        with lock:
            if finished(study) < search.trials:
                study.optimize(
                    lambda trial: objective(trial, search, data, worker),
                    callbacks=[
                        lambda study, _: requeue_dead_trials(study, search.storage),
                        optuna.study.MaxTrialsCallback(search.trials, states=FINISHED_STATES),
                    ],
                )
    finally:
        lock_path(search.storage, worker).unlink(missing_ok=True)


def run_workers(search: argparse.Namespace, study: optuna.Study, progress: bool) -> None:
    """Start the workers and show a bar over the study's trials until they stop; on Ctrl-C stop them, and fail and
    queue again the trials they were running. Raise TuneError if they stop before the study is done.
    """
    threads = max(1, (os.cpu_count() or 1) // search.workers)
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=work, args=(search, threads)) for _ in range(search.workers)]
    for worker in workers:
        worker.start()
    try:
        with tqdm(total=search.trials, desc=f"study {search.study}", unit="trial", disable=not progress) as bar:
            while any(worker.is_alive() for worker in workers):
                time.sleep(1)
                bar.update(min(finished(study), search.trials) - bar.n)
            bar.update(min(finished(study), search.trials) - bar.n)
    except KeyboardInterrupt:
        for worker in workers:
            worker.terminate()
            worker.join()
        requeue_dead_trials(study, search.storage)
        raise
    if finished(study) < search.trials:
        requeue_dead_trials(study, search.storage)
        raise TuneError(
            f"the workers stopped (exit status {[worker.exitcode for worker in workers]}) with {finished(study)} of "
            f"{search.trials} trials finished; run the same command to continue"
        )


def picked(study: optuna.Study, search: argparse.Namespace) -> optuna.trial.FrozenTrial:
    """Return the trial to confirm: the most accurate; with --cost, the cheapest of the Pareto front that reaches
    --target (without one, or where none reaches it, the front's most accurate).
    """
    if not search.cost:
        return study.best_trial
    front = sorted(study.best_trials, key=lambda trial: (trial.values[1], -trial.values[0]))
    reaching = []
    if search.target is not None:
        reaching = [trial for trial in front if trial.values[0] >= search.target - ON_THE_TARGET]
    return reaching[0] if reaching else max(front, key=lambda trial: (trial.values[0], -trial.values[1]))


def confirm(study: optuna.Study, search: argparse.Namespace) -> dict:
    """Train the picked trial's recipe and the default recipe on new seeds, paired by seed; return the figures.

    The result is kept in the study, so running the finished command again reports it without training.
    """
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        raise TuneError(
            f"no trial of study {search.study} trained: all were pruned (over the parameter budget or diverged); "
            "search other ranges"
        )
    best = picked(study, search)
    seeds = list(range(CONFIRMATION_SEED, CONFIRMATION_SEED + search.confirm_seeds))
    kept = study.user_attrs.get("confirmation")
    if kept and kept["trial"] == best.number and kept["seeds"] == seeds:
        return kept
    winner, default = replace(default_recipe(search), **best.params), default_recipe(search)
    data = load_data(search)
    pairs = [
        (train_and_score(replace(winner, seed=seed), data)[0], train_and_score(replace(default, seed=seed), data)[0])
        for seed in tqdm(seeds, desc="paired confirmation", unit="seed", disable=not cli.wants_progress(False))
    ]
    best_accuracies, default_accuracies = (list(side) for side in zip(*pairs, strict=True))
    figures = {"trial": best.number, "seeds": seeds, "best": best_accuracies, "default": default_accuracies}
    figures |= {"best_parameters": parameters_of(winner), "default_parameters": parameters_of(default)}
    images = len(data[0][0])
    figures |= {"best_flops": training_flops(winner, images), "default_flops": training_flops(default, images)}
    study.set_user_attr("confirmation", figures)
    return figures


@cli.reports_errors()
def main(argv: list[str] | None = None) -> int:
    """Run tune.py with argv; return the exit status."""
    signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C stops the study even if started ignoring it
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    search = parse_args(argv)
    check_budget(search)
    check_writable_folder(search.out_dir)
    study = open_study(open_storage(search.storage), search)
    requeue_dead_trials(study, search.storage)
    try:
        if finished(study) < search.trials:
            run_workers(search, study, cli.wants_progress(False))
        confirmation = confirm(study, search)
    except KeyboardInterrupt:
        kept = finished(study)
        raise cli.Interrupted(f"{kept} finished trial(s) kept in the study; run the same command to continue") from None
    description = (
        f"{search.trials} trials of {search.epochs} epoch(s), {search.seeds} seed(s) each, on the last "
        f"{search.validation:,} training images held out; storage `{safe_storage(search.storage)}`."
    )
    trials, fields = study.get_trials(deepcopy=False), list(search.space)
    if search.cost:
        target = f"reaching {search.target:g}%" if search.target is not None else "most accurate"
        description += f" Objectives: accuracy and the floating-point operations of training; confirmed: {target}."
    front = [trial.number for trial in study.best_trials] if search.cost else None
    start = default_recipe(search)
    markdown = report_markdown(search.study, description, trials, fields, start, confirmation, front)
    write_file(search.out_dir / "report.md", markdown)
    pictures = write_pictures(study, search.out_dir)
    print(markdown)
    print(f"report and pictures: {', '.join(str(path) for path in [search.out_dir / 'report.md', *pictures])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
