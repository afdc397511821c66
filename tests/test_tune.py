"""tune.py: a tiny study end to end, two workers sharing one budget, a killed worker, PostgreSQL, bad input."""

import argparse
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import filelock
import optuna
import pytest
import torch
from optuna.trial import TrialState

import tune
from conftest import ROOT, link_or_copy, require, run_script
from mnist_cnn.data import MNIST_FILES, load_mnist

QUICK = ["--seeds", "1", "--train-images", "2000", "--validation", "1000", "--confirm-seeds", "2"]
SEARCHED = ["--fields", "adamw_lr,muon_lr"]
LONGER_TRIALS = ["--train-images", "12000"]  # trials of seconds, so that a signal lands in the middle of one


def tune_args(storage: str, out_dir: Path, *extra: str, trials: int = 3) -> list[str]:
    """Return the arguments of a quick study of trials trials in storage, reporting into out_dir."""
    places = ["--storage", storage, "--out-dir", str(out_dir)]
    return ["--study", "quick", *places, "--trials", str(trials), *QUICK, *extra]


def trials_in(storage: str) -> list[optuna.trial.FrozenTrial]:
    """Return the trials of the quick study in storage."""
    if "://" in storage:
        storage = storage.replace("postgresql://", "postgresql+psycopg://", 1)
    else:
        storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(storage))
    return optuna.load_study(study_name="quick", storage=storage).get_trials(deepcopy=False)


def states(trials: list[optuna.trial.FrozenTrial]) -> dict[str, int]:
    """Return how many trials are in each state."""
    return {state.name: sum(trial.state == state for trial in trials) for state in TrialState}


@pytest.mark.slow
def test_tiny_study_reports_its_best_trials_confirmation_and_pictures(tmp_path: Path, data_dir: str) -> None:
    storage, out_dir = str(tmp_path / "quick.journal"), tmp_path / "report"
    result = run_script("tune.py", *tune_args(storage, out_dir, *SEARCHED), "--data-dir", data_dir)
    assert result.returncode == 0, result.stderr
    report = (out_dir / "report.md").read_text()
    assert "| trial | validation accuracy | one view | parameters | training GFLOP | adamw_lr | muon_lr |" in report
    assert "## Paired confirmation on new seeds 1000 to 1001" in report and "Paired difference: " in report
    assert report.rstrip().splitlines()[-1].strip().startswith("python train.py --epochs 1 --set adamw_lr=")
    assert report in result.stdout
    for picture in ("history.png", "importance.png", "accuracy_vs_parameters.png"):
        assert (out_dir / picture).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", picture
    assert states(trials_in(storage))["COMPLETE"] == 3


@pytest.mark.slow
def test_tiny_study_of_accuracy_against_cost_reports_its_front_and_confirms_the_cheapest_that_reaches_the_target(
    tmp_path: Path, data_dir: str
) -> None:
    storage, out_dir = str(tmp_path / "quick.journal"), tmp_path / "report"
    searched = ["--fields", "width,batch_size", "--cost", "flops", "--target", "50"]
    result = run_script("tune.py", *tune_args(storage, out_dir, *searched, trials=4), "--data-dir", data_dir)
    assert result.returncode == 0, result.stderr
    report = (out_dir / "report.md").read_text()
    assert "The Pareto front of accuracy against the floating-point operations of training, cheapest first:" in report
    assert "| trial | validation accuracy | one view | parameters | training GFLOP | width | batch_size |" in report
    trials = [trial for trial in trials_in(storage) if trial.state == TrialState.COMPLETE]
    front = [trial for trial in trials if not any(dominates(other, trial) for other in trials)]
    cheapest = min((trial for trial in front if trial.values[0] >= 50), key=lambda trial: trial.values[1])
    assert f"Trial {cheapest.number} (" in report
    assert all(trial.values[1] == trial.user_attrs["flops"] for trial in trials)
    assert (out_dir / "accuracy_vs_cost.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def dominates(one: optuna.trial.FrozenTrial, other: optuna.trial.FrozenTrial) -> bool:
    """Whether one is at least as accurate and as cheap as other, and better in one of the two."""
    (accuracy, flops), (other_accuracy, other_flops) = one.values, other.values
    return accuracy >= other_accuracy and flops <= other_flops and (accuracy, flops) != (other_accuracy, other_flops)


def costly_study(points: list[tuple[float, float]]) -> optuna.Study:
    """A study of accuracy against cost in memory holding trained trials of these (accuracy, flops)."""
    study = optuna.create_study(directions=["maximize", "minimize"])
    for accuracy, flops in points:
        study.add_trial(optuna.trial.create_trial(values=[accuracy, flops], user_attrs={"flops": flops}))
    return study


@pytest.mark.parametrize(
    ("target", "picked"),
    [(99.2, 1), (99.0, 2), (99.35, 0), (None, 0), (99.5, 0)],  # trial 3 is dominated by trial 1
)
def test_the_confirmed_point_is_the_cheapest_of_the_front_that_reaches_the_target(
    target: float | None, picked: int
) -> None:
    study = costly_study([(99.35, 6e11), (99.25, 3e11), (99.05, 1e11), (99.2, 4e11)])
    search = argparse.Namespace(cost="flops", target=target)
    assert tune.picked(study, search).number == picked


def test_a_mean_that_rounds_to_the_target_reaches_it() -> None:
    """Seeds at 99.19% and 99.21% average to 99.19999999999999 in floating point: that is 99.2%."""
    study = costly_study([(99.35, 6e11), ((99.19 + 99.21) / 2, 3e11)])
    assert tune.picked(study, argparse.Namespace(cost="flops", target=99.2)).number == 1
    assert tune.picked(study, argparse.Namespace(cost="flops", target=99.2001)).number == 0


def quick_search(tmp_path: Path, data_dir: str, *extra: str) -> argparse.Namespace:
    """Return the parsed options of a quick study in tmp_path."""
    return tune.parse_args(
        tune_args(str(tmp_path / "quick.journal"), tmp_path / "report", *extra, "--data-dir", data_dir)
    )


def test_a_recipe_over_the_parameter_budget_is_pruned_before_training(tmp_path: Path, data_dir: str) -> None:
    search = quick_search(tmp_path, data_dir, "--fields", "width", "--max-parameters", "6000")
    trial = optuna.trial.FixedTrial({"width": 1.0})
    with pytest.raises(optuna.TrialPruned, match=r"over the parameter budget \(17,866\)"):
        tune.objective(trial, search, data=None, worker="w")
    assert trial.user_attrs["outcome"] == "over the parameter budget (17,866)"


def test_a_diverging_recipe_is_pruned_with_its_seed(tmp_path: Path, data_dir: str) -> None:
    search = quick_search(tmp_path, data_dir, *SEARCHED, "--train-images", "1600")
    data = tune.load_data(search)
    trial = optuna.trial.FixedTrial({"adamw_lr": 1e9, "muon_lr": 1e9})
    with pytest.raises(optuna.TrialPruned, match=r"diverged \(seed 0\)"):
        tune.objective(trial, search, data, worker="w")
    assert trial.user_attrs["parameters"] == 17_866


def test_a_trial_of_a_worker_whose_lock_is_free_is_failed_and_queued_again(tmp_path: Path) -> None:
    storage = str(tmp_path / "quick.journal")
    study = optuna.create_study(study_name="quick", storage=tune.open_storage(storage))
    space = {"adamw_lr": optuna.distributions.FloatDistribution(0.01, 0.1)}
    dead, alive, _ = (study.ask(space) for _ in range(3))  # the third names no worker yet, and is young
    dead.set_user_attr("worker", "gone")
    alive.set_user_attr("worker", "here")
    tune.lock_path(storage, "gone").touch()  # a killed worker leaves its lock file behind, unlocked
    with filelock.FileLock(tune.lock_path(storage, "here")):
        tune.requeue_dead_trials(study, storage)
    trials = study.get_trials(deepcopy=False)
    assert [trial.state for trial in trials[:3]] == [TrialState.FAIL, TrialState.RUNNING, TrialState.RUNNING]
    assert trials[3].state == TrialState.WAITING and trials[3].user_attrs["retry_of"] == dead.number
    assert len(trials) == 4 and study.ask(space).params == trials[0].params
    assert not tune.lock_path(storage, "gone").exists()


def start_tune(args: list[str]) -> subprocess.Popen:
    """Start tune.py in a new session (a process group of its own) and return it."""
    return subprocess.Popen(
        [sys.executable, str(ROOT / "tune.py"), *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def wait_for_running_trial(storage: str, process: subprocess.Popen, timeout: float = 120) -> None:
    """Wait until the study in storage has a running trial that names its worker and has its recipe: it trains."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        trials = trials_in(storage) if Path(storage).exists() else []
        if any(trial.state == TrialState.RUNNING and "parameters" in trial.user_attrs for trial in trials):
            return
        assert process.poll() is None, process.communicate()
        time.sleep(0.2)
    pytest.fail("no trial started running")


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="kills a process group with SIGKILL, which is POSIX only")
def test_a_killed_worker_loses_no_trial_and_the_same_command_finishes(tmp_path: Path, data_dir: str) -> None:
    storage = str(tmp_path / "quick.journal")
    args = [*tune_args(storage, tmp_path / "report", *SEARCHED, *LONGER_TRIALS, trials=2), "--data-dir", data_dir]
    process = start_tune(args)
    wait_for_running_trial(storage, process)
    os.killpg(process.pid, signal.SIGKILL)
    process.communicate()
    assert states(trials_in(storage))["RUNNING"] == 1
    result = run_script("tune.py", *args)
    assert result.returncode == 0, result.stderr
    trials = trials_in(storage)
    assert states(trials)["COMPLETE"] == 2 and states(trials)["FAIL"] == 1 and states(trials)["RUNNING"] == 0
    killed = next(trial for trial in trials if trial.state == TrialState.FAIL)
    retry = next(trial for trial in trials if trial.user_attrs.get("retry_of") == killed.number)
    assert retry.state == TrialState.COMPLETE and retry.params == killed.params


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="sends SIGINT, which Windows cannot send to one process")
def test_ctrl_c_keeps_the_finished_trials_and_says_how_to_continue(tmp_path: Path, data_dir: str) -> None:
    storage = str(tmp_path / "quick.journal")
    process = start_tune([*tune_args(storage, tmp_path / "report", *SEARCHED, *LONGER_TRIALS), "--data-dir", data_dir])
    wait_for_running_trial(storage, process)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("interrupted: "), stderr
    assert "run the same command to continue" in lines[0]
    trials = trials_in(storage)
    assert states(trials)["RUNNING"] == 0 and states(trials)["FAIL"] == 1  # the trial that was cut short ...
    assert states(trials)["WAITING"] == 1  # ... is queued again, for the same command to run


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--storage", "mysql://user@localhost/optuna"], "unknown kind"),
        (["--storage", "postgresql://nobody:secret@127.0.0.1:9/none"], "cannot reach the database"),
        (["--max-parameters", "500"], "no recipe of this search meets --max-parameters 500"),
        (["--fields", "adamw_lr,learning_rate"], "learning_rate not searched"),
        (["--range", "width=0.9:0.1"], "LOW < HIGH"),
        (["--fields", "adamw_lr", "--range", "muon_lr=0.01:0.1"], "--range muon_lr: not among --fields adamw_lr"),
        (["--confirm-seeds", "1"], "--confirm-seeds: must be at least 2"),
        (["--target", "99.2"], "--target picks a point of the front of accuracy against cost: give --cost flops"),
    ],
)
def test_bad_input_exits_two_with_one_line_and_writes_nothing(
    extra: list[str], message: str, tmp_path: Path, data_dir: str, capsys: pytest.CaptureFixture
) -> None:
    args = ["--storage", str(tmp_path / "study.journal"), "--out-dir", str(tmp_path / "report"), *QUICK, *extra]
    try:
        status = tune.main([*args, "--data-dir", data_dir])
    except SystemExit as exited:  # argparse's own refusals
        status = exited.code
    assert status == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert message in lines[-1] and "secret" not in lines[-1]
    assert list(tmp_path.iterdir()) == []


def test_a_study_made_with_another_search_is_refused_unchanged(
    tmp_path: Path, data_dir: str, capsys: pytest.CaptureFixture
) -> None:
    first = quick_search(tmp_path, data_dir, "--fields", "adamw_lr")
    tune.open_study(tune.open_storage(first.storage), first)
    before = Path(first.storage).read_bytes()
    args = tune_args(first.storage, tmp_path / "report", "--fields", "muon_lr", "--data-dir", data_dir)
    assert tune.main(args) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: study quick exists in") and error.count("\n") == 1
    assert Path(first.storage).read_bytes() == before


def test_a_study_begun_from_another_default_recipe_is_refused(
    tmp_path: Path, data_dir: str, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = quick_search(tmp_path, data_dir, "--fields", "adamw_lr")
    tune.open_study(tune.open_storage(first.storage), first)
    earlier_default = tune.default_recipe(first)
    monkeypatch.setattr(tune, "default_recipe", lambda search: replace(earlier_default, batch_size=160))
    assert tune.main(tune_args(first.storage, tmp_path / "report", "--fields", "adamw_lr", "--data-dir", data_dir)) == 2
    assert "with another search" in capsys.readouterr().err


def test_training_evaluation_and_prediction_do_not_import_optuna_or_a_database_driver() -> None:
    code = (
        "import sys, train, evaluate, predict, export, serve\n"
        "print(sorted({name.split('.')[0] for name in sys.modules} & {'optuna', 'psycopg', 'sqlalchemy'}))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def as_postgres(*command: str) -> list[str]:
    """Return command run as the postgres user when this is root (initdb refuses root), else as it is."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return list(command)
    return ["runuser", "-u", "postgres", "--", *command]


@pytest.fixture()
def postgres() -> Iterator[str]:
    """A throwaway PostgreSQL server on a free local port with an empty database; yield its URL, then remove it."""
    initdb = max(glob.glob("/usr/lib/postgresql/*/bin/initdb"), default=None) or shutil.which("initdb")  # Debian's
    require("PostgreSQL's server (apt-get install postgresql)", initdb is not None)
    bin_dir = Path(initdb).parent
    folder = Path(tempfile.mkdtemp(prefix="tune-postgres-"))
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        import pwd  # POSIX only: as root, the server's files belong to the postgres user

        user = pwd.getpwnam("postgres")
        os.chown(folder, user.pw_uid, user.pw_gid)
    data, port = folder / "data", free_port()
    run = lambda *command: subprocess.run(as_postgres(*command), check=True, capture_output=True, timeout=120)  # noqa: E731
    try:
        run(str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "tune")
        options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1"
        run(str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(folder / "log"), "-w", "start")
        run(str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "tune", "optuna")
        yield f"postgresql://tune@127.0.0.1:{port}/optuna"
    finally:
        subprocess.run(as_postgres(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"), check=False)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.slow
def test_two_workers_started_together_on_an_empty_database(postgres: str, tmp_path: Path, data_dir: str) -> None:
    commands = [
        start_tune([*tune_args(postgres, tmp_path / f"report-{index}", *SEARCHED, trials=2), "--data-dir", data_dir])
        for index in range(2)
    ]
    outputs = [command.communicate(timeout=600) for command in commands]
    for command, (_, stderr) in zip(commands, outputs, strict=True):
        assert command.returncode == 0, stderr
        assert "Traceback" not in stderr
    trials = trials_in(postgres)
    assert 2 <= states(trials)["COMPLETE"] == len(trials) <= 2 + 1  # each worker but the last may overshoot by one


def test_a_study_in_which_nothing_trained_says_so(tmp_path: Path, data_dir: str) -> None:
    search = quick_search(tmp_path, data_dir, *SEARCHED)
    study = tune.open_study(tune.open_storage(search.storage), search)
    study.tell(study.ask(), state=TrialState.PRUNED)
    with pytest.raises(tune.TuneError, match="no trial of study quick trained: all were pruned"):
        tune.confirm(study, search)


def test_the_search_trains_and_scores_on_the_training_files_alone(tmp_path: Path, data_dir: str) -> None:
    raw = tmp_path / "train-only" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in MNIST_FILES[:2]:  # no test files: reading them would fail
        link_or_copy(Path(data_dir).resolve() / "MNIST" / "raw" / name, raw / name)
    search = quick_search(tmp_path, str(raw.parents[1]), *SEARCHED)
    (train_images, _), (held_images, held_labels) = tune.load_data(search)
    images, labels = load_mnist(data_dir, train=True, device=torch.device("cpu"))
    assert len(train_images) == 2000 and torch.equal(train_images, images[:2000])
    assert torch.equal(held_images, images[-1000:]) and torch.equal(held_labels, labels[-1000:])


def test_a_dead_trial_found_by_two_processes_is_queued_again_once(tmp_path: Path) -> None:
    storage = str(tmp_path / "quick.journal")
    study = optuna.create_study(study_name="quick", storage=tune.open_storage(storage))
    study.ask().set_user_attr("worker", "gone")
    other = optuna.load_study(study_name="quick", storage=tune.open_storage(storage))
    found = study.get_trials(deepcopy=False)  # both processes read the trial as running, then one fails it first
    tune.requeue_dead_trials(other, storage)
    study.get_trials = lambda **kwargs: found
    tune.requeue_dead_trials(study, storage)
    states = [trial.state for trial in other.get_trials(deepcopy=False)]
    assert states == [TrialState.FAIL, TrialState.WAITING]
