"""Search the recipe on the validation split with Optuna: trials of K seeds each, on one machine or many.

A study lives in a journal file beside the runs (runs/tune/NAME.journal) unless --storage names a
PostgreSQL database, through which the same command on many machines joins one study. --trials is
the study's total, whatever the number of workers; the same command continues a study after
Ctrl-C or a crash, and a trial that a killed worker left running is marked failed and run again.
After the search the best recipe is trained again on new seeds, paired by seed with the default
recipe, and only then is the command that trains it printed. The test set is never read.
"""

import argparse
import contextlib
import fcntl
import io
import json
import math
import multiprocessing
import os
import random
import signal
import socket
import statistics
import sys
import threading
import time
import warnings
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import matplotlib
import optuna
import sqlalchemy
import torch
from optuna.trial import TrialState
from tqdm import tqdm

import train
from mnist_cnn import cli
from mnist_cnn.data import DataError, add_data_option, load_training_and_scoring_sets
from mnist_cnn.device import autocast_dtype, keep_freed_memory
from mnist_cnn.files import WriteError, check_writable_folder, write_file
from mnist_cnn.recipe import SEARCH_SPACE, STEP_OF_INTS, Recipe, build_model, recipe_for
from mnist_cnn.scoring import score
from model import PARAMETER_BUDGET, count_parameters

matplotlib.use("Agg")  # draw to files, with no display
import matplotlib.pyplot as plt
from optuna.visualization import matplotlib as optuna_plots

TUNE_DIR = Path("runs") / "tune"
CONFIRMATION_SEED = 1000  # the paired confirmation trains seeds from here; the search uses 0 to K-1
HEARTBEAT_SECONDS = 20  # PostgreSQL: a running trial's worker writes a heartbeat this often
GRACE_SECONDS = 60  # ... and a trial without one for this long is failed and queued again
DATABASE_ATTEMPTS = 5
LIVE_STATES = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)
FINISHED_STATES = (TrialState.COMPLETE, TrialState.PRUNED)
BEST_ROWS = 5


class TuneError(Exception):
    """The search cannot start or continue as asked: bad options, storage, study or budget."""


@dataclass(frozen=True)
class Search:
    """Everything a study is: what it searches (its signature, which a continued study must match) and how."""

    study: str
    storage: str
    trials: int
    workers: int
    seeds: int
    epochs: int
    space: dict = field(default_factory=dict)
    max_parameters: int = PARAMETER_BUDGET - 1
    validation: int = 10_000
    train_images: int | None = None
    confirm_seeds: int = 4
    data_dir: str = "./data"
    out_dir: Path = TUNE_DIR

    def signature(self) -> dict:
        """Return what makes two runs of the command the same study."""
        keys = ("seeds", "epochs", "space", "max_parameters", "validation", "train_images")
        return json.loads(json.dumps({key: getattr(self, key) for key in keys}))

    def default_recipe(self) -> Recipe:
        """Return the recipe the search starts from: recipe_for(epochs), narrowed to the parameter budget if needed."""
        recipe = recipe_for(self.epochs)
        while parameters_of(recipe) > self.max_parameters and recipe.width > 0.05:
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


def parse_args(argv: list[str] | None) -> Search:
    """Parse tune.py's command line into a Search; raise TuneError for fields that are not searched."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--study", help="the study's name (default: recipe-<epochs>ep)")
    add(
        "--storage",
        help="a PostgreSQL URL (postgresql://user@host/db) or a journal file (default: runs/tune/NAME.journal)",
    )
    add(
        "--trials",
        type=cli.positive_int,
        default=40,
        help="trials in the whole study, all workers together (default: 40)",
    )
    add("--workers", type=cli.positive_int, default=1, help="worker processes on this machine (default: 1)")
    add(
        "--seeds",
        type=cli.positive_int,
        default=2,
        help="seeds each trial trains; its value is their mean (default: 2)",
    )
    add("--epochs", type=cli.positive_int, default=1, help="epochs of every trial (default: 1)")
    add("--fields", help=f"comma-separated fields to search (default: all: {','.join(SEARCH_SPACE)})")
    add("--range", action="append", default=[], type=parse_range, metavar="FIELD=LOW:HIGH", help="narrow a field")
    add("--max-parameters", type=cli.positive_int, default=PARAMETER_BUDGET - 1, help="parameter budget of a recipe")
    add("--validation", type=cli.positive_int, default=10_000, help="held-out training images (default: 10,000)")
    add("--train-images", type=cli.positive_int, help="train on the first N images only, for quick tries")
    add("--confirm-seeds", type=cli.positive_int, default=4, help="new seeds of the paired confirmation (default: 4)")
    add_data_option(parser)
    add("--out-dir", type=Path, help="folder for the report and pictures (default: runs/tune/NAME)")
    args = parser.parse_args(argv)
    fields = args.fields.split(",") if args.fields else list(SEARCH_SPACE)
    unknown = [name for name in fields if name not in SEARCH_SPACE]
    if unknown or not fields:
        raise TuneError(f"--fields: {', '.join(unknown) or 'none'} not searched; choose from {', '.join(SEARCH_SPACE)}")
    ranges = dict(args.range)
    space = {name: [*ranges.get(name, SEARCH_SPACE[name][:2]), SEARCH_SPACE[name][2]] for name in fields}
    study = args.study or f"recipe-{args.epochs}ep"
    storage = args.storage or str(TUNE_DIR / f"{study}.journal")
    return Search(
        study, storage, args.trials, args.workers, args.seeds, args.epochs, space, args.max_parameters,
        args.validation, args.train_images, args.confirm_seeds, args.data_dir, args.out_dir or TUNE_DIR / study,
    )  # fmt: skip


def check_budget(search: Search) -> None:
    """Raise TuneError when even the narrowest model of the search space breaks the parameter budget."""
    low_width = search.space["width"][0] if "width" in search.space else search.default_recipe().width
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
    return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))


def database_storage(url: str) -> optuna.storages.RDBStorage:
    """Return Optuna's storage in PostgreSQL, with heartbeats; retry when workers started together race to
    create its tables, and raise TuneError when the database cannot be reached.
    """
    for attempt in range(DATABASE_ATTEMPTS):
        try:
            return optuna.storages.RDBStorage(
                url,
                engine_kwargs={"connect_args": {"connect_timeout": 10}},
                heartbeat_interval=HEARTBEAT_SECONDS,
                grace_period=GRACE_SECONDS,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(),
            )
        except sqlalchemy.exc.OperationalError as error:
            reason = str(error.orig).strip().splitlines()[0] if error.orig else type(error).__name__
            raise TuneError(f"cannot reach the database {safe_url(url)}: {reason}") from None
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError):
            time.sleep(0.2 * (attempt + 1) + random.random() / 5)
    raise TuneError(f"cannot create Optuna's tables in {safe_url(url)} after {DATABASE_ATTEMPTS} attempts")


def safe_url(url: str) -> str:
    """Return url without its password."""
    return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)


def open_study(storage: optuna.storages.BaseStorage, search: Search) -> optuna.Study:
    """Create the study or join it; raise TuneError, changing nothing, when it was made with another search."""
    if search.study in optuna.get_all_study_names(storage):
        study = optuna.load_study(study_name=search.study, storage=storage, sampler=sampler())
    else:
        study = optuna.create_study(
            study_name=search.study, storage=storage, direction="maximize", load_if_exists=True, sampler=sampler()
        )
    made_with = study.user_attrs.get("search")
    if made_with is None:
        study.set_user_attr("search", search.signature())
    elif made_with != search.signature():
        raise TuneError(
            f"study {search.study} exists in {safe_storage(search.storage)} with another search "
            f"({json.dumps(made_with)}); continue it with the same options or choose another --study"
        )
    return study


def sampler() -> optuna.samplers.BaseSampler:
    """Return the sampler of every worker: TPE, told that the trials still running are pending."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(constant_liar=True)


@contextlib.contextmanager
def budget_lock(search: Search, storage: optuna.storages.BaseStorage) -> Iterator[None]:
    """Hold the study's lock, so that counting the trials and asking for a new one happen as one step."""
    if isinstance(storage, optuna.storages.RDBStorage):
        key = zlib.crc32(search.study.encode())
        with storage.engine.connect() as connection:
            connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": key})
            try:
                yield
            finally:
                connection.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), {"key": key})
        return
    with open(f"{search.storage}.budget-lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def this_worker() -> str:
    """Return this process's name as trials record it: host and process id."""
    return f"{socket.gethostname()}:{os.getpid()}"


def requeue_dead_trials(study: optuna.Study) -> int:
    """Fail each running trial whose worker on this machine is gone (or that never named its worker within
    GRACE_SECONDS) and queue its parameters again; return how many.
    """
    host, now = socket.gethostname(), time.time()
    count = 0
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker_host, _, pid = str(trial.user_attrs.get("worker", "")).rpartition(":")
        unnamed = "worker" not in trial.user_attrs and now - trial.datetime_start.timestamp() > GRACE_SECONDS
        if not unnamed and (worker_host != host or not pid.isdigit() or process_alive(int(pid))):
            continue
        fail_and_queue_again(study, trial.number, trial.params)
        count += 1
    return count


def fail_and_queue_again(study: optuna.Study, number: int, params: dict) -> None:
    """Mark the running trial number failed and queue a new trial with its parameters, which names it as retry_of."""
    study.tell(number, state=TrialState.FAIL)
    study.enqueue_trial(params, user_attrs={"retry_of": number}, skip_if_exists=False)


def process_alive(pid: int) -> bool:
    """Return whether a process with this id runs on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def suggest(trial: optuna.Trial, space: dict) -> dict:
    """Return the trial's value for each searched field."""
    values = {}
    for name, (low, high, scale) in space.items():
        if scale == "int":
            values[name] = trial.suggest_int(name, int(low), int(high), step=STEP_OF_INTS.get(name, 1))
        else:
            values[name] = trial.suggest_float(name, low, high, log=scale == "log")
    return values


def train_and_score(recipe: Recipe, data: tuple, views: int) -> tuple[float, float]:
    """Train recipe on data's training images; return its validation accuracy with views views and with one."""
    (train_images, train_labels), (images, labels) = data
    with contextlib.redirect_stdout(io.StringIO()):
        model = train.fit(recipe, train_images, train_labels).model
    amp_dtype = autocast_dtype(images.device)
    return score(model, images, labels, amp_dtype, views).accuracy, score(model, images, labels, amp_dtype, 1).accuracy


def run_trial(study: optuna.Study, trial: optuna.Trial, search: Search, data: tuple) -> None:
    """Train the trial's recipe with each seed and tell the study their mean validation accuracy, or that the
    recipe broke the parameter budget or diverged (pruned, with the reason in the trial's outcome).
    """
    recipe = replace(search.default_recipe(), **suggest(trial, search.space))
    parameters = parameters_of(recipe)
    trial.set_user_attr("parameters", parameters)
    if parameters > search.max_parameters:
        trial.set_user_attr("outcome", f"over the parameter budget ({parameters:,})")
        study.tell(trial, state=TrialState.PRUNED)
        return
    results = []
    for seed in range(search.seeds):
        try:
            results.append(train_and_score(replace(recipe, seed=seed), data, recipe.test_time_views))
        except train.DivergenceError:
            trial.set_user_attr("outcome", f"diverged (seed {seed})")
            study.tell(trial, state=TrialState.PRUNED)
            return
    trial.set_user_attr("outcome", "trained")
    trial.set_user_attr("accuracy_one_view", statistics.mean(one for _, one in results))
    study.tell(trial, statistics.mean(accuracy for accuracy, _ in results))


@contextlib.contextmanager
def heartbeat(storage: optuna.storages.BaseStorage, trial: optuna.Trial) -> Iterator[None]:
    """Record the trial's heartbeat in PostgreSQL while it runs, so that other machines can tell it is alive."""
    if not isinstance(storage, optuna.storages.RDBStorage):
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(HEARTBEAT_SECONDS):
            storage.record_heartbeat(trial._trial_id)

    storage.record_heartbeat(trial._trial_id)
    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def load_data(search: Search) -> tuple:
    """Return (training images, labels) and (validation images, labels) as the search says, on the CPU."""
    _, train_set, validation_set = load_training_and_scoring_sets(
        search.data_dir, torch.device("cpu"), search.validation
    )
    if search.train_images:
        train_set = (train_set[0][: search.train_images], train_set[1][: search.train_images])
    return train_set, validation_set


def work(search: Search, threads: int) -> None:
    """One worker: take trials until the study holds --trials of them; a Ctrl-C gives the running trial back."""
    torch.set_num_threads(threads)
    keep_freed_memory()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(search.storage)
    study = optuna.load_study(study_name=search.study, storage=storage, sampler=sampler())
    data = load_data(search)
    trial = None
    try:
        while True:
            with budget_lock(search, storage):
                if isinstance(storage, optuna.storages.RDBStorage):
                    optuna.storages.fail_stale_trials(study)
                requeue_dead_trials(study)
                if len(study.get_trials(deepcopy=False, states=LIVE_STATES)) >= search.trials:
                    return
                trial = study.ask()
                trial.set_user_attr("worker", this_worker())
            with heartbeat(storage, trial):
                run_trial(study, trial, search, data)
            trial = None
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if trial is not None:
            fail_and_queue_again(study, trial.number, trial.params)


def worker_main(search: Search, threads: int) -> None:
    """Run a worker in its own process; end quietly on Ctrl-C."""
    with contextlib.suppress(KeyboardInterrupt):
        work(search, threads)


def finished(study: optuna.Study) -> int:
    """Return the number of trials that finished: trained, or pruned for the budget or divergence."""
    return len(study.get_trials(deepcopy=False, states=FINISHED_STATES))


def run_workers(search: Search, study: optuna.Study, progress: bool) -> None:
    """Start the workers, show a bar over the study's trials until they stop; raise TuneError if they stop early."""
    threads = max(1, (os.cpu_count() or 1) // search.workers)
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=worker_main, args=(search, threads)) for _ in range(search.workers)]
    for worker in workers:
        worker.start()
    try:
        with tqdm(total=search.trials, desc=f"study {search.study}", unit="trial", disable=not progress) as bar:
            while any(worker.is_alive() for worker in workers):
                time.sleep(1)
                bar.update(finished(study) - bar.n)
            bar.update(finished(study) - bar.n)
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for worker in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.pid, signal.SIGINT)
        for worker in workers:
            worker.join()
        raise
    lost = [worker.exitcode for worker in workers if worker.exitcode]
    if finished(study) < search.trials:
        requeue_dead_trials(study)
        raise TuneError(
            f"the workers stopped (exit status {lost}) with {finished(study)} of {search.trials} trials finished; "
            "run the same command to continue"
        )


def confirm(study: optuna.Study, search: Search) -> dict:
    """Train the best trial's recipe and the default recipe on new seeds, paired by seed; return the figures.

    The result is kept in the study, so running the finished command again reports it without training.
    """
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        raise TuneError(
            f"no trial of study {search.study} trained: all were pruned (over the parameter budget or diverged); "
            "search other ranges"
        )
    best = study.best_trial
    seeds = list(range(CONFIRMATION_SEED, CONFIRMATION_SEED + search.confirm_seeds))
    kept = study.user_attrs.get("confirmation")
    if kept and kept["trial"] == best.number and kept["seeds"] == seeds:
        return kept
    winner = replace(search.default_recipe(), **best.params)
    default = search.default_recipe()
    data = load_data(search)
    pairs = [
        (train_and_score(replace(winner, seed=seed), data, winner.test_time_views)[0],
         train_and_score(replace(default, seed=seed), data, default.test_time_views)[0])
        for seed in tqdm(seeds, desc="paired confirmation", unit="seed", disable=not cli.wants_progress(False))
    ]  # fmt: skip
    differences = [best_accuracy - default_accuracy for best_accuracy, default_accuracy in pairs]
    figures = {
        "trial": best.number,
        "seeds": seeds,
        "best": [best_accuracy for best_accuracy, _ in pairs],
        "default": [default_accuracy for _, default_accuracy in pairs],
        "mean_difference": statistics.mean(differences),
        "std_difference": statistics.stdev(differences) if len(differences) > 1 else 0.0,
        "wins": sum(difference > 0 for difference in differences),
        "default_parameters": parameters_of(default),
        "best_parameters": parameters_of(winner),
    }
    study.set_user_attr("confirmation", figures)
    return figures


def winner_command(search: Search, params: dict) -> str:
    """Return the train.py command that trains the best recipe on all training images and scores the test set."""
    winner, default = asdict(replace(search.default_recipe(), **params)), asdict(recipe_for(search.epochs))
    changed = {name: value for name, value in winner.items() if value != default[name]}
    settings = " ".join(f"--set {name}={value:.6g}" for name, value in changed.items())
    return f"python train.py --epochs {search.epochs} {settings}".rstrip()


def report_markdown(study: optuna.Study, search: Search, confirmation: dict) -> str:
    """Return the study's report: the best trials, the paired confirmation, and the command for the winner."""
    trials = study.get_trials(deepcopy=False)
    completed = sorted(
        (trial for trial in trials if trial.state == TrialState.COMPLETE), key=lambda trial: trial.value, reverse=True
    )
    counts = {state.name.lower(): sum(trial.state == state for trial in trials) for state in TrialState}
    fields = list(search.space)
    lines = [
        f"# Study {search.study}",
        "",
        f"{search.trials} trials of {search.epochs} epoch(s), {search.seeds} seed(s) each, on the last "
        f"{search.validation:,} training images held out; storage `{safe_storage(search.storage)}`. Trials: "
        + ", ".join(f"{count} {name}" for name, count in counts.items() if count)
        + ".",
        "",
        "| trial | validation accuracy | one view | parameters | " + " | ".join(fields) + " |",
        "| --- | --- | --- | --- | " + " | ".join("---" for _ in fields) + " |",
    ]
    for trial in completed[:BEST_ROWS]:
        values = " | ".join(f"{trial.params[name]:.4g}" for name in fields)
        one_view = trial.user_attrs.get("accuracy_one_view", math.nan)
        lines.append(
            f"| {trial.number} | {trial.value:.3f}% | {one_view:.3f}% | {trial.user_attrs['parameters']:,} | {values} |"
        )
    mean, spread = confirmation["mean_difference"], confirmation["std_difference"]
    error = spread / math.sqrt(len(confirmation["seeds"]))
    better = mean - 2 * error > 0
    lines += [
        "",
        f"## Paired confirmation on new seeds {confirmation['seeds'][0]} to {confirmation['seeds'][-1]}",
        "",
        f"Trial {confirmation['trial']} ({confirmation['best_parameters']:,} parameters) against the default recipe "
        f"({confirmation['default_parameters']:,} parameters), each trained on the same seeds; the best of "
        f"{len(completed)} noisy trials is optimistic by construction, so only these new seeds decide.",
        "",
        "| seed | best trial | default | difference |",
        "| --- | --- | --- | --- |",
        *(
            f"| {seed} | {best:.2f}% | {default:.2f}% | {best - default:+.2f} |"
            for seed, best, default in zip(
                confirmation["seeds"], confirmation["best"], confirmation["default"], strict=True
            )
        ),
        "",
        f"Paired difference: {mean:+.3f} points (standard deviation {spread:.3f}, standard error {error:.3f}; "
        f"higher on {confirmation['wins']} of {len(confirmation['seeds'])} seeds). "
        + (
            "The best trial is better than the default beyond two standard errors."
            if better
            else "Not better than the default beyond two standard errors: keep the default unless more seeds say so."
        ),
        "",
        "Train the best trial's recipe on all 60,000 training images and score the test set with:",
        "",
        f"    {winner_command(search, study.best_trial.params)}",
        "",
    ]
    return "\n".join(lines)


def safe_storage(storage: str) -> str:
    """Return the storage as a report may show it (a database URL without its password)."""
    return safe_url(storage) if "://" in storage else storage


def write_pictures(study: optuna.Study, folder: Path) -> list[Path]:
    """Write the study's history, the importance of each field and accuracy against parameters as PNG files."""
    completed = [trial for trial in study.get_trials(deepcopy=False) if trial.state == TrialState.COMPLETE]
    written = []
    drawings = {
        "history.png": lambda: optuna_plots.plot_optimization_history(study),
        "importance.png": lambda: optuna_plots.plot_param_importances(study),
        "accuracy_vs_parameters.png": lambda: accuracy_against_parameters(completed),
    }
    for name, draw in drawings.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                axes = draw()
            except (ValueError, RuntimeError, ZeroDivisionError):
                continue  # too few trials for this picture (importance needs two trained ones)
        buffer = io.BytesIO()
        axes.figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
        plt.close(axes.figure)
        write_file(folder / name, buffer.getvalue())
        written.append(folder / name)
    return written


def accuracy_against_parameters(trials: list) -> matplotlib.axes.Axes:
    """Return a scatter of each trained trial's validation accuracy against its model's parameters."""
    _, axes = plt.subplots(figsize=(6, 4))
    axes.scatter([trial.user_attrs["parameters"] for trial in trials], [trial.value for trial in trials])
    axes.set_xlabel("parameters")
    axes.set_ylabel("validation accuracy (%)")
    axes.set_title("Accuracy against parameters")
    return axes


def main(argv: list[str] | None = None) -> int:
    """Run tune.py with argv; return the exit status."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = None
    try:
        search = parse_args(argv)
        check_budget(search)
        check_writable_folder(search.out_dir)
        storage = open_storage(search.storage)
        study = open_study(storage, search)
        requeue_dead_trials(study)
        run_workers(search, study, cli.wants_progress(False))
        confirmation = confirm(study, search)
        markdown = report_markdown(study, search, confirmation)
        write_file(search.out_dir / "report.md", markdown)
        pictures = write_pictures(study, search.out_dir)
    except (TuneError, DataError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except WriteError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        kept = finished(study) if study is not None else 0
        print(
            f"interrupted: {kept} finished trial(s) kept in the study; run the same command to continue",
            file=sys.stderr,
        )
        return 130
    print(markdown)
    print(f"report and pictures: {', '.join(str(path) for path in [search.out_dir / 'report.md', *pictures])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
