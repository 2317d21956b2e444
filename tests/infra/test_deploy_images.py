"""deploy/Dockerfile and deploy/images.mk agree with the contract and the Pulumi program.

No Docker engine is needed: the Dockerfile is read as text and ``make -n`` prints the build commands.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest

from infra.compute import WORKSPACE_FILE
from resources import aws_contract

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = (REPO / "deploy" / "Dockerfile").read_text()


def _stages() -> dict[str, list[str]]:
    """Instructions of each stage (continuation lines joined), by stage name."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    stages: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = re.match(r"FROM\s+\S+\s+AS\s+(\S+)", line, re.IGNORECASE)
        if match:
            current = match.group(1)
            stages[current] = []
        if current:
            stages[current].append(line)
    return stages


STAGES = _stages()
FINAL_STAGES = ("app", "dagster")


def _env(stage: str) -> dict[str, str]:
    env = {}
    for line in STAGES[stage]:
        if line.startswith("ENV "):
            for item in shlex.split(line[4:]):
                key, _, value = item.partition("=")
                env[key] = value
    return env


@pytest.mark.parametrize("stage", FINAL_STAGES)
def test_final_images_run_as_an_unprivileged_user(stage):
    users = [line.split()[1] for line in STAGES[stage] if line.startswith("USER ")]
    assert users == ["tradai"]
    (create,) = [line for line in STAGES["python-base"] if "useradd" in line]
    assert "--uid 10001" in create and "--system" in create


def test_dependencies_come_from_the_lock_file_with_compiled_bytecode():
    assert _env("uv-base")["UV_COMPILE_BYTECODE"] == "1"
    syncs = [line for line in STAGES["app-build"] if "uv sync" in line]
    assert len(syncs) == 2 and all("--frozen --no-dev" in line for line in syncs)
    assert "--no-install-project" in syncs[0] and "--no-editable" in syncs[1]
    (export,) = [line for line in STAGES["dagster-build"] if "uv export" in line]
    assert "--frozen --no-dev" in export and "--constraints /tmp/constraints.txt" in export


def test_the_app_image_carries_its_own_name_for_the_run_launcher():
    assert "ARG DAGSTER_CURRENT_IMAGE" in STAGES["app"]
    assert _env("app")["DAGSTER_CURRENT_IMAGE"] == "${DAGSTER_CURRENT_IMAGE}"


def test_paths_and_commands_match_the_task_definitions():
    for stage in FINAL_STAGES:
        assert _env(stage)["DAGSTER_HOME"] == aws_contract.DAGSTER_HOME_IN_IMAGE
        assert f"COPY deploy/dagster.yaml {aws_contract.DAGSTER_HOME_IN_IMAGE}/dagster.yaml" in STAGES[stage]
    assert _env("app")["TRADAI_HOME"] == aws_contract.TRADAI_HOME_IN_IMAGE
    assert f"COPY deploy/workspace.yaml {WORKSPACE_FILE}" in STAGES["dagster"]
    (command,) = [line for line in STAGES["app"] if line.startswith("CMD ")]
    assert (
        f'"-m", "{aws_contract.CODE_LOCATION_MODULE}", "-a", "{aws_contract.CODE_LOCATION_ATTRIBUTE}"'
        in command
    )
    assert f'"-p", "{aws_contract.CODE_LOCATION_PORT}"' in command


def test_every_copied_path_exists_and_is_in_the_build_context():
    ignore = (REPO / "deploy" / "Dockerfile.dockerignore").read_text().splitlines()
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    for stage, lines in STAGES.items():
        for line in lines:
            if line.startswith("COPY ") and "--from=" not in line:
                *sources, _ = line.split()[1:]
                for source in sources:
                    assert (REPO / source).exists(), (stage, source)
                    assert source.rstrip("/") in allowed, (stage, source)


def test_make_images_builds_both_targets_named_like_the_ecr_repositories():
    result = subprocess.run(
        [
            "make",
            "-n",
            "-f",
            "deploy/images.mk",
            "images",
            "STACK=staging",
            "ECR_REGISTRY=registry",
            "IMAGE_TAG=abc",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    builds = [shlex.split(line) for line in result.stdout.splitlines() if "docker build" in line]
    targets = {build[build.index("--target") + 1]: build[build.index("-t") + 1] for build in builds}
    assert targets == {
        image: f"registry/{aws_contract.repository_name(image, 'staging')}:abc"
        for image in aws_contract.IMAGE_REPOSITORIES
    }
    (app,) = [build for build in builds if "app" in build]
    assert f"DAGSTER_CURRENT_IMAGE={targets['app']}" in app
    assert all(build[build.index("-f") + 1] == "deploy/Dockerfile" and build[-1] == "." for build in builds)
