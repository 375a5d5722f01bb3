"""Shared helpers for the infra tests (``infra/``).

* Terraform is found on PATH; the hashicorp/aws provider in a local plugin
  directory, ``$DOCUMEE_TF_PLUGIN_DIR`` or else ``/opt/tf-plugins``
  (layout ``registry.terraform.io/hashicorp/aws/<version>/<os_arch>/...``).
  Tests that need either skip, saying which is missing, and only then.
* Terraform never runs in the work tree: each session works on a temporary
  copy of ``infra/``, with ``TF_DATA_DIR`` and an empty CLI config in the
  temporary directory, so ``.terraform/``, lock files and state never reach git
  and parallel sessions never share a working directory.
* :func:`render_template` renders ``infra/policies/*.json.tftpl`` the way
  Terraform's ``templatefile()`` does for the subset the templates use
  (``${name}`` interpolation and the ``$${`` / ``%%{`` escapes); anything else
  raises, and ``test_policy_rendering.py`` checks it against Terraform itself.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
INFRA_DIR = REPO_ROOT / "infra"
POLICY_DIR = INFRA_DIR / "policies"
TERRAFORM_DIR = INFRA_DIR / "terraform"
MODULE_REL = Path("terraform/modules/documee-remote")
EXAMPLES_REL = Path("terraform/examples")

DEFAULT_PLUGIN_DIR = Path("/opt/tf-plugins")
PLUGIN_DIR_ENV = "DOCUMEE_TF_PLUGIN_DIR"
# The module requires hashicorp/aws >= 5.0, < 6.0.
PROVIDER_GLOB = "registry.terraform.io/hashicorp/aws/5.*/*/terraform-provider-aws*"

# ---------------------------------------------------------------------------
# templatefile() for the policy templates
# ---------------------------------------------------------------------------

_TEMPLATE_TOKEN = re.compile(
    r"(?P<escaped_interp>\$\$\{)"
    r"|(?P<escaped_directive>%%\{)"
    r"|\$\{\s*(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s*\}"
    r"|(?P<unsupported>\$\{|%\{)"
)


class TemplateError(ValueError):
    """The template uses more of Terraform's template language than we render."""


def render_template(path: Path, variables: Mapping[str, str]) -> str:
    """Render a ``.tftpl`` file as ``templatefile(path, variables)`` would.

    Supports ``${name}`` (optionally with spaces inside the braces) and the
    ``$${`` / ``%%{`` escapes. Directives (``%{ if }``), strip markers
    (``${~ x ~}``) and expressions raise :class:`TemplateError`, so a template
    can't silently render differently here than in Terraform.
    """
    text = path.read_text(encoding="utf-8")

    def substitute(match: re.Match[str]) -> str:
        if match.group("escaped_interp"):
            return "${"
        if match.group("escaped_directive"):
            return "%{"
        name = match.group("name")
        if name is not None:
            if name not in variables:
                raise TemplateError(f"{path.name}: vars map does not contain key {name!r}")
            value = variables[name]
            if not isinstance(value, str):
                raise TemplateError(f"{path.name}: variable {name!r} must be a string")
            return value
        snippet = text[match.start() : match.start() + 30]
        raise TemplateError(f"{path.name}: unsupported template syntax at {snippet!r}")

    return _TEMPLATE_TOKEN.sub(substitute, text)


def render_policy(name: str, **variables: str) -> str:
    """Render ``infra/policies/<name>.json.tftpl``."""
    return render_template(POLICY_DIR / f"{name}.json.tftpl", variables)


# ---------------------------------------------------------------------------
# Terraform discovery and invocation
# ---------------------------------------------------------------------------


def find_terraform() -> str | None:
    return shutil.which("terraform")


def find_plugin_dir() -> tuple[Path | None, str]:
    """The provider plugin directory, or None and why not."""
    configured = os.environ.get(PLUGIN_DIR_ENV)
    candidate = Path(configured) if configured else DEFAULT_PLUGIN_DIR
    origin = f"${PLUGIN_DIR_ENV}={configured}" if configured else f"default {DEFAULT_PLUGIN_DIR}"
    if not candidate.is_dir():
        return None, (
            f"no Terraform plugin directory ({origin} does not exist); set {PLUGIN_DIR_ENV} "
            "to a directory holding registry.terraform.io/hashicorp/aws/5.x"
        )
    if not any(candidate.glob(PROVIDER_GLOB)):
        return None, f"hashicorp/aws 5.x provider not found under {candidate} ({origin})"
    return candidate, ""


def _ignore_terraform_state(_directory: str, names: list[str]) -> set[str]:
    return {
        n
        for n in names
        if n in {".terraform", ".terraform.lock.hcl"} or n.startswith("terraform.tfstate")
    }


@dataclass
class Terraform:
    """Runs terraform in a private temporary copy of ``infra/``."""

    binary: str
    root: Path  # the temporary directory holding the copy and the data dirs
    plugin_dir: Path | None = None
    env: dict[str, str] = field(default_factory=dict)

    @property
    def infra(self) -> Path:
        return self.root / "infra"

    def workdir(self, relative: Path | str) -> Path:
        return self.infra / relative

    def data_dir(self, workdir: Path) -> Path:
        # One TF_DATA_DIR per working directory, outside it.
        return self.root / "tfdata" / workdir.relative_to(self.root).as_posix().replace("/", "__")

    def run(
        self,
        args: Sequence[str],
        cwd: Path,
        *,
        timeout: float = 300,
        check: bool = True,
        extra_env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        env = {**self.env, "TF_DATA_DIR": str(self.data_dir(cwd)), **(extra_env or {})}
        command = [self.binary, *args]
        try:
            result = subprocess.run(
                command,
                cwd=cwd,
                env=env,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(
                f"`{' '.join(command)}` in {cwd} timed out after {timeout}s\n"
                f"--- stdout ---\n{exc.stdout}\n--- stderr ---\n{exc.stderr}"
            ) from exc
        if check and result.returncode != 0:
            raise AssertionError(
                f"`{' '.join(command)}` in {cwd} exited {result.returncode}\n"
                f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"
            )
        return result

    def init(self, cwd: Path) -> subprocess.CompletedProcess[str]:
        """``terraform init -backend=false`` from the local plugin directory only."""
        args = ["init", "-backend=false", "-input=false", "-no-color"]
        if self.plugin_dir is not None:
            args.append(f"-plugin-dir={self.plugin_dir}")
        return self.run(args, cwd, timeout=180)


def _base_env(root: Path, plugin_dir: Path | None) -> dict[str, str]:
    cli_config = root / "terraformrc"
    lines = ["# Written by tests/infra/conftest.py: no credentials, no mirrors."]
    if plugin_dir is not None:
        # The plugin directory has the plugin cache's (unpacked) layout, so used
        # as the cache it makes `init` symlink the ~700 MB provider into each
        # TF_DATA_DIR instead of copying it. Nothing is written there: with
        # -plugin-dir as the only source, whatever the cache lacks fails anyway.
        lines += [
            f"plugin_cache_dir = {json.dumps(str(plugin_dir))}",
            "plugin_cache_may_break_dependency_lock_file = true",
        ]
    cli_config.write_text("\n".join(lines) + "\n")
    env = {
        key: value
        for key, value in os.environ.items()
        # Never hand real credentials or profile settings to terraform.
        if not key.startswith(("AWS_", "TF_"))
    }
    env.update(
        {
            "TF_CLI_CONFIG_FILE": str(cli_config),
            "TF_IN_AUTOMATION": "1",
            "TF_INPUT": "0",
            "CHECKPOINT_DISABLE": "1",
        }
    )
    return env


def _make_terraform(tmp_path_factory: pytest.TempPathFactory, plugin_dir: Path | None) -> Terraform:
    binary = find_terraform()
    if binary is None:
        pytest.skip("terraform is not installed (not found on PATH)")
    root = tmp_path_factory.mktemp("terraform")
    shutil.copytree(INFRA_DIR, root / "infra", ignore=_ignore_terraform_state)
    return Terraform(
        binary=binary, root=root, plugin_dir=plugin_dir, env=_base_env(root, plugin_dir)
    )


@pytest.fixture(scope="session")
def terraform_bare(tmp_path_factory: pytest.TempPathFactory) -> Terraform:
    """Terraform without the AWS provider (enough for templatefile()); skips without terraform."""
    return _make_terraform(tmp_path_factory, plugin_dir=None)


@pytest.fixture(scope="session")
def terraform(tmp_path_factory: pytest.TempPathFactory) -> Terraform:
    """Terraform with the local AWS provider; skips without terraform or the provider."""
    if find_terraform() is None:
        pytest.skip("terraform is not installed (not found on PATH)")
    plugin_dir, reason = find_plugin_dir()
    if plugin_dir is None:
        pytest.skip(reason)
    return _make_terraform(tmp_path_factory, plugin_dir=plugin_dir)


@pytest.fixture(scope="session")
def initialised_module(terraform: Terraform) -> Path:
    """The module's directory in the temporary copy, after ``terraform init``."""
    workdir = terraform.workdir(MODULE_REL)
    terraform.init(workdir)
    return workdir


# ---------------------------------------------------------------------------
# AWS credentials for moto
# ---------------------------------------------------------------------------


def set_fake_aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials and no profile/endpoint settings that could reach real AWS."""
    for key in list(os.environ):
        if key.startswith("AWS_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)


@pytest.fixture(scope="module")
def fake_aws_env() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as monkeypatch:
        set_fake_aws_env(monkeypatch)
        yield
