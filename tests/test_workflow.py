"""The GitHub Actions workflow: the README's tests, head and base trained alike in separate jobs, the base found as the
merge commit's first parent, the base's own gate judging, artifacts that re-runs can replace, and only the badge job
writing. (actionlint, check-jsonschema and zizmor check its syntax and pins in .ci/run.)
"""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, RUN_SLOW, WORKFLOW
from tools import gate as gate_module

ZEROS = "0" * 40


@pytest.fixture(scope="module")
def workflow() -> dict:
    """The parsed workflow; YAML reads the key `on` as True."""
    parsed = yaml.safe_load(WORKFLOW.read_text())
    parsed["on"] = parsed.pop(True)
    return parsed


def run_lines(workflow: dict, *jobs: str) -> list[str]:
    """Every line of every `run:` script of the jobs named (all when none), in order, continuations joined."""
    chosen = [job for name, job in workflow["jobs"].items() if not jobs or name in jobs]
    scripts = [step["run"] for job in chosen for step in job["steps"] if "run" in step]
    return [line.strip() for script in scripts for line in script.replace("\\\n", " ").splitlines()]


def steps_by_id(workflow: dict, job: str) -> dict[str, dict]:
    """The steps of a job by their id, or their name where they have none."""
    return {step.get("id", step.get("name")): step for step in workflow["jobs"][job]["steps"]}


def readme_test_commands() -> list[str]:
    """The test commands that README.md gives on lines of their own: the fast suite, then the whole one."""
    return re.findall(r"^(pytest [^\n]*)$", (ROOT / "README.md").read_text(), re.MULTILINE)


def test_the_workflow_and_ci_run_the_readme_test_commands(workflow: dict) -> None:
    fast, whole = readme_test_commands()[:2]
    assert whole == f"{fast} {RUN_SLOW}"
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert whole in ci_lines and "bash .ci/lowest-versions" in ci_lines
    assert whole in run_lines(workflow, "test")
    assert fast in run_lines(workflow, "laptops")
    assert "bash .ci/lowest-versions" in run_lines(workflow, "lowest-versions")


def test_every_laptop_runs_the_fast_suite_and_trains(workflow: dict) -> None:
    laptops = workflow["jobs"]["laptops"]
    assert laptops["runs-on"] == "${{ matrix.os }}"
    assert set(laptops["strategy"]["matrix"]["os"]) == {"macos-latest", "windows-latest"}
    assert any(line.startswith("python train.py") for line in run_lines(workflow, "laptops"))


def test_every_job_computes_on_the_cpu(workflow: dict) -> None:
    assert workflow["env"]["MNIST_DEVICE"] == "cpu"  # --device auto honours it (tests/test_device.py)
    assert not any("--device" in line for line in run_lines(workflow))


def run_step(script: str, cwd: Path, **env: str) -> dict[str, str]:
    """Run a step's bash script as a runner would in cwd; return what it wrote to $GITHUB_OUTPUT."""
    output = cwd / "github-output"
    output.write_text("")
    subprocess.run(
        ["bash", "-eo", "pipefail", "-c", script],
        cwd=cwd,
        env=os.environ | env | {"GITHUB_OUTPUT": str(output)},
        check=True,
        capture_output=True,
        text=True,
    )
    return dict(line.split("=", 1) for line in output.read_text().splitlines())


def git(folder: Path, *args: str) -> str:
    """Run git in folder with a fixed identity; return what it printed."""
    identity = ["-c", "user.name=test", "-c", "user.email=test@example.com", "-c", "commit.gpgsign=false"]
    found = subprocess.run(["git", *identity, *args], cwd=folder, capture_output=True, text=True, check=True)
    return found.stdout.strip()


@pytest.fixture
def merge_commit(tmp_path: Path) -> dict[str, str]:
    """A repository whose HEAD merges a pull request into main after main moved on since the branch started.

    Returns the commits: the pull request's recorded base (where the branch started), main's tip when the merge
    was made, and the pull request's head.
    """
    change = tmp_path / "change"  # where the workflow checks the change out
    change.mkdir()
    git(change, "init", "-q", "--initial-branch", "main")
    commits = {}
    for name in ("started", "feature", "moved-on"):
        if name == "feature":
            git(change, "checkout", "-q", "-b", "feature")
        elif name == "moved-on":
            git(change, "checkout", "-q", "main")
        (change / f"{name}.txt").write_text(name)
        git(change, "add", ".")
        git(change, "commit", "-q", "-m", name)
        commits[name] = git(change, "rev-parse", "HEAD")
    git(change, "merge", "-q", "--no-ff", "-m", "merge", "feature")
    return commits


def test_the_base_of_a_pull_request_is_its_merge_commits_first_parent(
    workflow: dict, merge_commit: dict[str, str], tmp_path: Path
) -> None:
    script = steps_by_id(workflow, "train")["base"]["run"]
    found = run_step(script, tmp_path, EVENT="pull_request", BEFORE="")
    assert found["sha"] == merge_commit["moved-on"] != merge_commit["started"]
    checkout = workflow["jobs"]["train"]["steps"][0]
    assert checkout["with"]["fetch-depth"] == 2 and checkout["with"]["path"] == "change"


def test_a_pull_request_checked_out_without_its_merge_commit_stops(workflow: dict, tmp_path: Path) -> None:
    (tmp_path / "change").mkdir()
    git(tmp_path / "change", "init", "-q")
    git(tmp_path / "change", "commit", "-q", "--allow-empty", "-m", "only")
    script = steps_by_id(workflow, "train")["base"]["run"]
    with pytest.raises(subprocess.CalledProcessError):
        run_step(script, tmp_path, EVENT="pull_request", BEFORE="")


@pytest.mark.parametrize(
    ("event", "before", "base"), [("push", "1" * 40, "1" * 40), ("push", ZEROS, ""), ("workflow_dispatch", "", "")]
)
def test_the_base_of_a_push_is_the_commit_before_it(
    workflow: dict, tmp_path: Path, event: str, before: str, base: str
) -> None:
    script = steps_by_id(workflow, "train")["base"]["run"]
    assert run_step(script, tmp_path, EVENT=event, BEFORE=before)["sha"] == base


@pytest.mark.parametrize(
    ("base", "has_gate", "judge", "words"),
    [
        ("a" * 40, True, "base", "the base commit"),
        ("a" * 40, False, "change", "has no trusted gate yet"),
        ("", False, "change", "no base commit"),
    ],
)
def test_the_judge_is_the_bases_own_gate_where_it_has_one(
    workflow: dict, tmp_path: Path, base: str, has_gate: bool, judge: str, words: str
) -> None:
    (tmp_path / "base").mkdir()
    if has_gate:
        (tmp_path / "base" / "gate.toml").write_text("seeds = 5\n")
    script = steps_by_id(workflow, "gate")["judge"]["run"]
    found = run_step(script, tmp_path, BASE_SHA=base)
    assert found["dir"] == judge and words in found["label"]


def test_a_base_that_exists_must_check_out_train_and_be_judged(workflow: dict) -> None:
    for job in ("train", "train-base", "gate"):
        steps = {step.get("name"): step for step in workflow["jobs"][job]["steps"]}
        assert not any(step.get("continue-on-error") for step in steps.values()), job
    base_checkout = steps_by_id(workflow, "gate")[
        "Check out the base commit into base/ (where there is one, it must check out)"
    ]
    assert base_checkout["if"] == "${{ steps.base.outputs.sha != '' }}" and base_checkout["with"]["path"] == "base"
    judging = steps_by_id(workflow, "gate")["gate"]["run"]
    assert '[ -z "$BASE_SHA" ] || baseline=(--base "$GITHUB_WORKSPACE/runs/base"' in judging


def test_the_gate_runs_none_of_the_changes_code_and_counts_a_failed_job_as_failed(workflow: dict) -> None:
    job = workflow["jobs"]["gate"]
    assert job["if"] == "${{ !cancelled() }}" and set(job["needs"]) == {"lint", "test", "train", "train-base"}
    first = job["steps"][0]["run"]
    assert 'grep -o success | wc -l)" -eq 4' in first
    for step in job["steps"]:  # python runs in the judge's folder; the change lies in change/, the runs beside it
        script = step.get("run", "")
        assert "python" not in script or 'cd "$JUDGE_DIR"' in script, step.get("name")
        assert step.get("working-directory") in (None,), step.get("name")
    downloads = [step for step in job["steps"] if step.get("uses", "").startswith("actions/download-artifact@")]
    assert [step["with"]["path"] for step in downloads] == ["runs/head", "runs/base"]  # beside change/, not in it


@pytest.mark.parametrize("job", ["train", "train-base", "gate"])
def test_mnist_is_restored_without_saving_and_checked_against_its_published_hashes(workflow: dict, job: str) -> None:
    steps = workflow["jobs"][job]["steps"]
    uses = [step.get("uses", "") for step in steps]
    assert any(use.startswith("actions/cache/restore@") for use in uses)
    assert not any(re.match(r"actions/cache@", use) for use in uses)
    check = next(step["run"] for step in steps if "sha256sum --check" in step.get("run", ""))
    for name, digest in gate_module.TEST_FILES_SHA256.items():
        assert f"{digest}  {name}" in check


def test_every_job_trains_in_float32(workflow: dict) -> None:
    assert workflow["env"]["MNIST_PRECISION"] == "fp32"


def test_the_change_and_its_base_train_the_same_seeds_in_jobs_of_their_own(workflow: dict) -> None:
    head, base = steps_by_id(workflow, "train"), steps_by_id(workflow, "train-base")
    train_head = next(step for step in head.values() if "train.py" in step.get("run", ""))
    train_base = next(step for step in base.values() if "train.py" in step.get("run", ""))
    assert train_head["run"] == train_base["run"] and '"$THRESHOLDS"' in train_head["run"]
    assert "export.py" in train_head["run"]
    assert train_head["working-directory"] == "change" and train_base["working-directory"] == "base"
    assert train_head["env"]["RUNS"] == "${{ github.workspace }}/runs/head"
    assert train_base["env"]["RUNS"] == "${{ github.workspace }}/runs/base"
    installs = [step for step in base.values() if "pip install" in step.get("run", "")]
    assert installs and all(step["working-directory"] == "base" for step in installs)
    assert workflow["jobs"]["train-base"]["needs"] == "lint"


def test_the_gate_job_judges_from_the_judges_checkout_with_no_threshold_of_its_own(workflow: dict) -> None:
    assert not any(name for name in workflow["env"] if "GATE" in name or "ACCURACY" in name or "BUDGET" in name)
    script = steps_by_id(workflow, "gate")["gate"]["run"].replace("\\\n", " ")
    assert 'cd "$JUDGE_DIR"' in script and "python -m tools.gate" in script
    assert not re.search(r"--(margin|min-accuracy|parameter-budget|time-ratio|seeds)", script)
    assert "|| status=$?" in script and script.rstrip().endswith('exit "$status"')
    setup = next(
        step for step in workflow["jobs"]["gate"]["steps"] if step.get("uses", "").startswith("actions/setup-python")
    )
    assert "cache" not in setup["with"]  # no pip cache that a job running the change's code could have written


def test_every_project_command_it_runs_exists(workflow: dict) -> None:
    commands = [shlex.split(line.split("||")[0]) for line in run_lines(workflow) if line.startswith("python ")]
    targets = [words[2] if words[1] == "-m" else words[1] for words in commands if words[1] not in ("-m", "-c")]
    modules = [words[2] for words in commands if words[1] == "-m" and words[2].startswith("tools.")]
    assert "train.py" in targets and "export.py" in targets and "tools.gate" in modules
    for target in targets:
        assert (ROOT / target).is_file(), target
    for module in modules:
        assert (ROOT / (module.replace(".", "/") + ".py")).is_file(), module


def test_only_the_badge_and_pages_jobs_may_write_and_only_on_pushes_to_main(workflow: dict) -> None:
    assert workflow["permissions"] == {"contents": "read"}
    granted = {name: job["permissions"] for name, job in workflow["jobs"].items() if "permissions" in job}
    assert granted == {
        "badge": {"contents": "write"},
        "pages": {"contents": "read", "pages": "write", "id-token": "write"},
    }
    for name in granted:
        assert workflow["jobs"][name]["if"] == "github.event_name == 'push' && github.ref == 'refs/heads/main'"
        assert workflow["jobs"][name]["needs"] == "gate"
    assert "pull_request_target" not in WORKFLOW.read_text()


def test_the_page_is_built_from_the_judged_checkpoint_and_carries_the_judged_model(workflow: dict) -> None:
    steps = workflow["jobs"]["pages"]["steps"]
    uses = [step.get("uses", "") for step in steps]
    download = next(step for step in steps if step.get("uses", "").startswith("actions/download-artifact@"))
    assert download["with"]["name"] == "mnist-cnn-${{ github.sha }}"
    build = next(step["run"] for step in steps if "--site" in step.get("run", ""))
    assert "python export.py --checkpoint artifact/runs/head/seed-0/mnist_cnn_*.pt --site site" in build
    assert "cmp site/model.onnx artifact/runs/head/seed-0/mnist_cnn_*.onnx" in build
    assert any(use.startswith("actions/setup-node@") for use in uses)
    assert any("npm ci" in step.get("run", "") for step in steps)
    upload = uses.index(next(use for use in uses if use.startswith("actions/upload-pages-artifact@")))
    deploy = uses.index(next(use for use in uses if use.startswith("actions/deploy-pages@")))
    assert upload < deploy and steps[upload]["with"]["path"] == "site"
    assert steps[upload]["with"]["name"] == steps[deploy]["with"]["artifact_name"]  # one per attempt: re-runs work
    assert "github.run_attempt" in steps[upload]["with"]["name"]
    assert "page_url" in steps[-1]["env"]["PAGE_URL"] and "GITHUB_STEP_SUMMARY" in steps[-1]["run"]


def test_every_artifact_can_be_uploaded_again_by_a_rerun(workflow: dict) -> None:
    uploads = [
        step for job in workflow["jobs"].values() for step in job["steps"] if "upload-artifact" in step.get("uses", "")
    ]
    assert len(uploads) == 3 and all(step["with"]["overwrite"] is True for step in uploads)


def test_what_ships_is_what_the_gate_judged(workflow: dict) -> None:
    steps = steps_by_id(workflow, "gate")
    download = next(step for step in steps.values() if step.get("with", {}).get("path") == "runs/head")
    upload = next(step for step in steps.values() if "upload-artifact" in step.get("uses", ""))
    paths = upload["with"]["path"].splitlines()
    for suffix in ("pt", "json", "md", "onnx"):
        assert f"runs/head/seed-0/mnist_cnn_*.{suffix}" in paths
    assert "badge/accuracy.json" in paths and upload["with"]["if-no-files-found"] == "error"
    assert download["with"]["name"] == "head-runs-${{ github.sha }}"
    assert '--head "$GITHUB_WORKSPACE/runs/head"' in steps["gate"]["run"]
    assert workflow["jobs"]["badge"]["needs"] == "gate"


def test_code_owners_cover_the_workflow_the_thresholds_and_every_module_the_gate_imports() -> None:
    owned = [line.split()[0] for line in (ROOT / ".github" / "CODEOWNERS").read_text().splitlines() if line[:1] == "/"]
    listing = "import sys, tools.gate; print(*(getattr(m, '__file__', None) for m in list(sys.modules.values())))"
    files = subprocess.run([sys.executable, "-c", listing], cwd=ROOT, capture_output=True, text=True, check=True)
    imported = {
        Path(name).resolve().relative_to(ROOT).as_posix()
        for name in files.stdout.split()
        if Path(name).is_absolute() and Path(name).resolve().is_relative_to(ROOT)
    }
    assert "tools/gate.py" in imported and "mnist_cnn/onnx_model.py" in imported
    for path in [*imported, ".github/workflows/model-training.yml", "gate.toml"]:
        assert any(("/" + path).startswith(pattern) for pattern in owned), f"{path} has no code owner"
