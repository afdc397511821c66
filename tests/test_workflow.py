"""The GitHub Actions workflow: it runs the README's tests, trains head and base alike, gates last, and only the
badge job may write. (actionlint, check-jsonschema and zizmor check its syntax and pins in .ci/run.)
"""

import re
import shlex

import pytest
import yaml

from conftest import GATE_THRESHOLDS, ROOT, RUN_SLOW, WORKFLOW


@pytest.fixture(scope="module")
def workflow() -> dict:
    """The parsed workflow; YAML reads the key `on` as True."""
    parsed = yaml.safe_load(WORKFLOW.read_text())
    parsed["on"] = parsed.pop(True)
    return parsed


def run_lines(workflow: dict) -> list[str]:
    """Every line of every `run:` script of every job, in order, continuations joined."""
    scripts = [step["run"] for job in workflow["jobs"].values() for step in job["steps"] if "run" in step]
    return [line.strip() for script in scripts for line in script.replace("\\\n", " ").splitlines()]


def readme_test_commands() -> list[str]:
    """The test commands that README.md gives on lines of their own: the fast suite, then the whole one."""
    return re.findall(r"^(pytest [^\n]*)$", (ROOT / "README.md").read_text(), re.MULTILINE)


def steps_by_name(workflow: dict, job: str) -> dict[str, dict]:
    """The steps of a job by their id, or their name where they have none."""
    return {step.get("id", step.get("name")): step for step in workflow["jobs"][job]["steps"]}


def test_the_workflow_and_ci_run_the_readme_test_commands(workflow: dict) -> None:
    fast, whole = readme_test_commands()[:2]
    assert whole == f"{fast} {RUN_SLOW}"
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert whole in ci_lines and "bash .ci/lowest-versions" in ci_lines
    assert whole in run_lines({"jobs": {"train": workflow["jobs"]["train"]}})
    assert fast in run_lines({"jobs": {"laptops": workflow["jobs"]["laptops"]}})
    assert "bash .ci/lowest-versions" in run_lines({"jobs": {"lowest": workflow["jobs"]["lowest-versions"]}})


def test_every_laptop_runs_the_fast_suite_and_trains(workflow: dict) -> None:
    laptops = workflow["jobs"]["laptops"]
    assert laptops["runs-on"] == "${{ matrix.os }}"
    assert set(laptops["strategy"]["matrix"]["os"]) == {"macos-latest", "windows-latest"}
    assert any(line.startswith("python train.py") for line in run_lines({"jobs": {"laptops": laptops}}))


def test_the_gate_takes_every_threshold_from_the_env(workflow: dict) -> None:
    script = steps_by_name(workflow, "train")["compare"]["run"].replace("\\\n", " ")
    for option, name in GATE_THRESHOLDS.items():
        assert f'{option} "${name}"' in script, option
        assert name in workflow["env"]


def test_every_project_command_it_runs_exists(workflow: dict) -> None:
    commands = [shlex.split(line.split("||")[0]) for line in run_lines(workflow) if line.startswith("python ")]
    targets = [words[2] if words[1] == "-m" else words[1] for words in commands if words[1] not in ("-m", "-c")]
    modules = [words[2] for words in commands if words[1] == "-m" and words[2].startswith("tools.")]
    assert "train.py" in targets and "export.py" in targets and "tools.gate" in modules
    for target in targets:
        assert (ROOT / target).is_file(), target
    for module in modules:
        assert (ROOT / (module.replace(".", "/") + ".py")).is_file(), module


def test_head_and_base_train_the_same_seeds_through_the_command_line(workflow: dict) -> None:
    steps = steps_by_name(workflow, "train")
    head, base = steps["train"]["run"], steps["train-base"]["run"]
    assert head.splitlines()[0] == base.splitlines()[0]
    assert head.replace('"runs/head/', '"$GITHUB_WORKSPACE/runs/base/') == base
    assert steps["train-base"]["working-directory"] == "baseline"


def test_the_gate_decides_last_after_writing_summary_and_badge(workflow: dict) -> None:
    steps = steps_by_name(workflow, "train")
    names = list(steps)
    script = steps["compare"]["run"]
    assert "--base runs/base" in script and "--summary" in script and "--badge badge/accuracy.json" in script
    assert "|| status=$?" in script and script.rstrip().endswith('exit "$status"')
    assert names.index("train") < names.index("export") < names.index("train-base") < names.index("compare")


def test_only_the_badge_job_may_write(workflow: dict) -> None:
    assert workflow["permissions"] == {"contents": "read"}
    writers = {name for name, job in workflow["jobs"].items() if "write" in job.get("permissions", {}).values()}
    assert writers == {"badge"}
    assert "pull_request_target" not in WORKFLOW.read_text()


def test_keeps_the_model_its_card_onnx_file_and_badge(workflow: dict) -> None:
    upload = next(s for s in workflow["jobs"]["train"]["steps"] if s.get("uses", "").startswith("actions/upload-"))
    paths = upload["with"]["path"].split()
    for suffix in ("pt", "json", "md", "onnx"):
        assert f"runs/head/seed-0/mnist_cnn_*.{suffix}" in paths
    assert "badge/accuracy.json" in paths and upload["with"]["if-no-files-found"] == "error"
