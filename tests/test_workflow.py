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


def test_trains_with_the_accuracy_gate(workflow: dict) -> None:
    training = [script for script in run_commands(workflow) if script.startswith("python train.py")]
    assert len(training) == 1
    assert re.search(r"--min-accuracy 95(\s|$)", training[0])


def test_only_the_badge_job_may_write(workflow: dict) -> None:
    assert workflow["permissions"] == {"contents": "read"}
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
    assert "models/mnist_cnn_*.pt" in settings["path"].split()


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
