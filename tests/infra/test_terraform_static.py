"""Offline checks of the Terraform code: fmt, init, validate and ``terraform test``.

Everything runs in a temporary copy of ``infra/`` (see conftest.py); the AWS
provider comes from the local plugin directory, never from the network, and
``terraform test`` answers every AWS call with ``mock_provider``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import EXAMPLES_REL, INFRA_DIR, PLUGIN_DIR_ENV, Terraform, find_plugin_dir


@pytest.mark.infra
def test_fmt_is_clean(terraform_bare: Terraform) -> None:
    result = terraform_bare.run(
        ["fmt", "-check", "-recursive", "-diff", "-no-color", "terraform"],
        terraform_bare.infra,
        check=False,
    )
    assert result.returncode == 0, (
        "terraform fmt -check failed; run `terraform fmt -recursive infra/terraform`\n"
        f"{result.stdout}{result.stderr}"
    )


@pytest.mark.infra
def test_module_validates(terraform: Terraform, initialised_module: Path) -> None:
    result = terraform.run(["validate", "-no-color"], initialised_module)
    assert "Success" in result.stdout


@pytest.mark.infra
@pytest.mark.parametrize("example", ["basic", "moto"])
def test_example_validates(terraform: Terraform, example: str) -> None:
    workdir = terraform.workdir(EXAMPLES_REL / example)
    terraform.init(workdir)
    result = terraform.run(["validate", "-no-color"], workdir)
    assert "Success" in result.stdout


@pytest.mark.infra
def test_terraform_test_with_mock_provider(terraform: Terraform, initialised_module: Path) -> None:
    """Runs infra/terraform/modules/documee-remote/tests/*.tftest.hcl."""
    result = terraform.run(["test", "-no-color"], initialised_module, timeout=600, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"terraform test failed:\n{output}"
    assert " 0 failed" in output
    # Every run block passed, none skipped.
    assert "skip" not in output.lower(), output
    assert (Path(initialised_module) / "tests" / "module.tftest.hcl").is_file()


@pytest.mark.infra
def test_init_uses_only_the_local_plugin_directory(
    terraform: Terraform, initialised_module: Path
) -> None:
    """The provider was installed from -plugin-dir (no registry access)."""
    lock = (initialised_module / ".terraform.lock.hcl").read_text()
    assert 'provider "registry.terraform.io/hashicorp/aws"' in lock
    installed = list(
        terraform.data_dir(initialised_module).glob(
            "providers/registry.terraform.io/hashicorp/aws/*"
        )
    )
    assert installed, "the AWS provider was not installed into the temporary TF_DATA_DIR"


def test_terraform_working_files_are_gitignored() -> None:
    """A manual `terraform init/apply` inside infra/ must not reach git."""
    gitignore = (INFRA_DIR / ".gitignore").read_text().splitlines()
    for entry in (".terraform/", "*.tfstate*", ".terraform.lock.hcl"):
        assert entry in gitignore


def test_plugin_dir_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The skip reason names the variable and what is missing."""
    monkeypatch.setenv(PLUGIN_DIR_ENV, str(tmp_path / "absent"))
    found, reason = find_plugin_dir()
    assert found is None
    assert PLUGIN_DIR_ENV in reason
    assert "does not exist" in reason

    monkeypatch.setenv(PLUGIN_DIR_ENV, str(tmp_path))
    found, reason = find_plugin_dir()
    assert found is None
    assert "hashicorp/aws 5.x provider not found" in reason

    provider = tmp_path / "registry.terraform.io/hashicorp/aws/5.100.0/linux_amd64"
    provider.mkdir(parents=True)
    (provider / "terraform-provider-aws_v5.100.0_x5").touch()
    assert find_plugin_dir() == (tmp_path, "")
