"""The GitHub Actions workflow: triggers, the commands it runs, and who may write."""

import re

import pytest
import yaml

from conftest import ROOT

WORKFLOW = ROOT / ".github" / "workflows" / "model-training.yml"


@pytest.fixture(scope="module")
def workflow() -> dict:
    """The parsed workflow; YAML reads the key `on` as True."""
    parsed = yaml.safe_load(WORKFLOW.read_text())
    parsed["on"] = parsed.pop(True)
    return parsed


def run_commands(workflow: dict) -> list[str]:
    """Every `run:` script of every job, in order."""
    return [step["run"] for job in workflow["jobs"].values() for step in job["steps"] if "run" in step]


def readme_test_command() -> str:
    """The test command that README.md gives in its code block after 'Run the tests'."""
    match = re.search(r"^(pytest [^\n]*)$", (ROOT / "README.md").read_text(), re.MULTILINE)
    assert match, "README.md gives no pytest command on a line of its own"
    return match.group(1)


def test_triggers(workflow: dict) -> None:
    triggers = workflow["on"]
    assert set(triggers) == {"push", "pull_request", "workflow_dispatch"}
    assert triggers["push"]["branches"] == ["main"]
    assert triggers["pull_request"]["branches"] == ["main"]


def test_runs_the_readme_test_command(workflow: dict) -> None:
    command = readme_test_command()
    assert command in [line.strip() for script in run_commands(workflow) for line in script.splitlines()]
    assert command in (ROOT / ".ci" / "run").read_text().splitlines()


def steps_by_name(workflow: dict, job: str) -> dict[str, dict]:
    """The steps of a job by their id, or their name where they have none."""
    return {step.get("id", step.get("name")): step for step in workflow["jobs"][job]["steps"]}


def test_gate_settings_are_set_once_in_env(workflow: dict) -> None:
    assert int(workflow["env"]["GATE_SEEDS"]) == 3
    assert float(workflow["env"]["GATE_MARGIN"]) == 0.2
    assert float(workflow["env"]["MIN_ACCURACY"]) == 95
    text = WORKFLOW.read_text()
    for name in ("GATE_SEEDS", "GATE_MARGIN", "MIN_ACCURACY"):
        assert text.count(f"{name}:") == 1


def test_base_is_the_pull_requests_base_or_the_previous_push(workflow: dict) -> None:
    base_sha = workflow["jobs"]["train"]["env"]["BASE_SHA"]
    assert "github.event_name == 'pull_request' && github.event.pull_request.base.sha" in base_sha
    assert "|| github.event.before" in base_sha
    checkout = steps_by_name(workflow, "train")["base"]
    assert checkout["uses"].startswith("actions/checkout@")
    assert checkout["with"]["ref"] == "${{ env.BASE_SHA }}"
    assert checkout["with"]["path"] == "baseline"
    assert checkout["with"]["persist-credentials"] is False
    assert checkout["continue-on-error"] is True


def test_head_and_base_train_the_same_seeds_through_the_command_line(workflow: dict) -> None:
    steps = steps_by_name(workflow, "train")
    loop = "for seed in $(seq 0 $((GATE_SEEDS - 1))); do"
    head, base = steps["train"], steps["train-base"]
    assert loop in head["run"] and loop in base["run"]
    assert 'python train.py --seed "$seed" --out-dir "runs/head/seed-$seed" --no-progress' in head["run"]
    assert (
        'python train.py --seed "$seed" --out-dir "$GITHUB_WORKSPACE/runs/base/seed-$seed" --no-progress'
        in (base["run"])
    )
    assert base["working-directory"] == "baseline" and base["continue-on-error"] is True


def test_comparison_gates_after_writing_summary_and_badge(workflow: dict) -> None:
    steps = steps_by_name(workflow, "train")
    names = list(steps)
    script = steps["compare"]["run"]
    assert "python compare.py --head runs/head" in script
    assert "--base runs/base" in script
    for setting in ('--margin "$GATE_MARGIN"', '--min-accuracy "$MIN_ACCURACY"', '--summary "$GITHUB_STEP_SUMMARY"'):
        assert setting in script
    assert "|| status=$?" in script and script.rstrip().endswith('exit "$status"')
    assert "python report.py runs/head/seed-0/" in script
    assert steps["compare"]["if"] == "${{ !cancelled() && steps.train.outcome != 'skipped' }}"
    assert names.index("train") < names.index("train-base") < names.index("compare")


def test_only_the_badge_job_may_write(workflow: dict) -> None:
    assert workflow["permissions"] == {"contents": "read"}
    assert "permissions" not in workflow["jobs"]["train"]
    writers = {name for name, job in workflow["jobs"].items() if "write" in job.get("permissions", {}).values()}
    assert writers == {"badge"}
    badge = workflow["jobs"]["badge"]
    assert badge["permissions"] == {"contents": "write"}
    assert badge["if"] == "github.event_name == 'push' && github.ref == 'refs/heads/main'"
    assert "pull_request_target" not in WORKFLOW.read_text()


def test_uploads_the_checkpoint_or_fails(workflow: dict) -> None:
    uploads = [
        step
        for step in workflow["jobs"]["train"]["steps"]
        if step.get("uses", "").startswith("actions/upload-artifact@")
    ]
    assert len(uploads) == 1
    settings = uploads[0]["with"]
    assert "${{ github.sha }}" in settings["name"]
    assert settings["if-no-files-found"] == "error"
    assert settings["retention-days"] > 0
    assert "runs/head/seed-0/mnist_cnn_*.pt" in settings["path"].split()


def test_lints_first_with_the_pinned_linters(workflow: dict) -> None:
    lint = workflow["jobs"]["lint"]
    commands = [line.strip() for step in lint["steps"] if "run" in step for line in step["run"].splitlines()]
    assert "python -m pip install -r requirements-dev.txt" in commands
    assert any(command.startswith("ruff check") for command in commands)
    assert "ruff format --check ." in commands
    assert workflow["jobs"]["train"]["needs"] == "lint"
    assert "torch" not in " ".join(commands)
    pins = (ROOT / "requirements-dev.txt").read_text()
    assert re.search(r"^ruff==\d+\.\d+\.\d+$", pins, re.MULTILINE)


def test_exports_and_keeps_the_onnx_file_and_model_card(workflow: dict) -> None:
    steps = steps_by_name(workflow, "train")
    names = list(steps)
    assert steps["export"]["run"] == "python export.py --checkpoint runs/head/seed-0/mnist_cnn_*.pt"
    assert names.index("train") < names.index("export") < names.index("compare")
    upload = next(step for step in steps.values() if step.get("uses", "").startswith("actions/upload-artifact@"))
    paths = upload["with"]["path"].split()
    assert "runs/head/seed-0/mnist_cnn_*.onnx" in paths and "runs/head/seed-0/mnist_cnn_*.md" in paths
    assert "model card" in steps["compare"]["run"] and "GITHUB_STEP_SUMMARY" in steps["compare"]["run"]
