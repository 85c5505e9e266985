"""``examples/ci/``: the GitHub Actions workflow and the GitLab CI job run the same command,
and that command works as written (run with bash from a fresh directory holding what a
checkout holds, the installed ckptwatch on PATH), so the examples cannot rot."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import xmlschema
import yaml
from junitparser import JUnitXml

ROOT = Path(__file__).parent.parent
CI = ROOT / "examples" / "ci"


def github_steps() -> dict[str, dict]:
    workflow = yaml.safe_load((CI / "github-actions.yml").read_text())
    return {step.get("name", step.get("uses")): step for step in workflow["jobs"]["smoke"]["steps"]}


def gitlab_job() -> dict:
    return yaml.safe_load((CI / "gitlab-ci.yml").read_text())["ckptwatch-smoke"]


def smoke_command() -> str:
    """The command both files run (checked to be the same)."""
    github = github_steps()["Smoke-check checkpointing"]["run"]
    gitlab = [line for line in gitlab_job()["script"] if line.startswith("ckptwatch ")]
    assert len(gitlab) == 1 and gitlab[0] == github
    return github


def run_as_ci(tmp_path: Path, command: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
    """``bash -c COMMAND`` in a checkout-like directory, with the installed ckptwatch and python on PATH."""
    work = tmp_path / "checkout"
    (work / "examples").mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "examples" / "train.py", work / "examples" / "train.py")
    if not (work / "listeners.d").exists():
        shutil.copytree(ROOT / "listeners.d", work / "listeners.d")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CKPTWATCH_", "PYTHONPATH", "GITHUB_"))}
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env.update(extra_env)
    return subprocess.run(["bash", "-euo", "pipefail", "-c", command], cwd=work, env=env, capture_output=True,
                          text=True, timeout=300, stdin=subprocess.DEVNULL)


def test_both_files_run_one_command_and_keep_its_junit_report():
    command = smoke_command()
    assert "--junit-xml reports/ckptwatch-junit.xml" in command and "-- python examples/train.py" in command
    assert gitlab_job()["artifacts"]["reports"]["junit"] == "reports/ckptwatch-junit.xml"
    assert gitlab_job()["artifacts"]["when"] == "always"
    upload = github_steps()["Upload the reports"]
    assert upload["if"] == "always()" and upload["with"]["path"] == "reports/"
    assert github_steps()["Install ckptwatch"]["run"] == "pip install ." == gitlab_job()["script"][0]


def test_the_smoke_command_passes_as_written_and_fails_when_a_save_goes_missing(tmp_path):
    """Steps: run the command as the CI files do (GITHUB_STEP_SUMMARY set, as on GitHub);
    then the same command with training cut short at step 60.
    Result: exit 0, the JUnit report valid with no failure, the summary JSON valid, the step
    summary written; cut short: exit 4, and the last line names the missing steps."""
    command = smoke_command()
    summary_md = tmp_path / "step-summary.md"
    result = run_as_ci(tmp_path, command, GITHUB_STEP_SUMMARY=str(summary_md))
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip().splitlines()[-1].split(" ", 1)[1].startswith("summary: exit 0")
    reports = tmp_path / "checkout" / "reports"
    xmlschema.XMLSchema(str(ROOT / "tests" / "data" / "junit.xsd")).validate(str(reports / "ckptwatch-junit.xml"))
    suite = next(iter(JUnitXml.fromfile(str(reports / "ckptwatch-junit.xml"))))
    assert suite.failures == 0 and suite.tests >= 5 + 2 + 3  # 5 commits, 2 expectations, the command...
    summary = json.loads((reports / "ckptwatch-summary.json").read_text())
    jsonschema.validate(summary, json.loads((ROOT / "ckptwatch" / "report" / "summary.schema.json").read_text()))
    assert [c["step"] for c in summary["checkpoints"]] == [20, 40, 60, 80, 100]
    assert "### ✅ ckptwatch:" in summary_md.read_text()

    shutil.rmtree(tmp_path / "checkout" / "runs")
    broken = run_as_ci(tmp_path, command.replace("--steps 100", "--steps 60"))
    assert broken.returncode == 4, broken.stderr
    assert "summary: exit 4 (expected checkpoints at steps 20,40,60,80,100; committed: 20,40,60)" in \
        broken.stderr.strip().splitlines()[-1]


def test_the_readme_shows_the_same_command():
    """The README's "CI smoke checks" command is the one the CI files run."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## CI smoke checks", 1)[1]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    assert " ".join(block.replace("\\\n", " ").split()) == smoke_command()
