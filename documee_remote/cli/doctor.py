"""``doctor``: checks of the store's credentials, settings and conditional writes."""

from __future__ import annotations

import click
from rich.text import Text

from ..error_codes import (
    EXIT_PROBLEMS,
)
from ..errors import (
    ConfigurationError,
)
from ._app import (
    CliState,
    _command,
    pass_state,
)
from ._output import (
    _emit_json,
    _spinner,
    _table,
)

# -- doctor ----------------------------------------------------------------------------------------


#: How a check's ``ok`` (True, False, or None: skipped) is shown.
_CHECK_RESULTS = {True: ("pass", "green"), False: ("FAIL", "red"), None: ("skip", "dim")}


@_command("doctor")
@click.option(
    "--no-probe",
    is_flag=True,
    help="Skip the conditional-write probe (it writes and deletes one scratch object).",
)
@pass_state
def doctor_command(state: CliState, no_probe: bool) -> None:
    """Check the store: credentials, bucket, versioning, encryption, public access, CAS.

    Prints a pass/fail table; exits 1 if any check failed. The probe writes
    one scratch object under _probe/ and deletes it; it is skipped with
    --read-only or --no-probe.
    """
    from .. import doctor

    try:
        url: str | None = state.resolve_url()
        options = state.settings().store_options()
    except ConfigurationError as exc:
        url, options = None, {}
        error: str | None = str(exc)
    else:
        error = None
    with _spinner(state, "running checks"):
        results = doctor.run_checks(url, options, probe=not no_probe, config_error=error)
    ok = doctor.all_passed(results)
    if state.json:
        _emit_json({"ok": ok, "store": url, "checks": [r.to_dict() for r in results]})
    else:
        table = _table("check", "result", "detail", title=Text(f"doctor: {url or '(no store)'}"))
        for r in results:
            label, style = _CHECK_RESULTS[r.ok]
            table.add_row(Text(r.name), Text(label, style=style), Text(r.detail))
        state.out.print(table)
        failed = sum(1 for r in results if r.ok is False)
        state.out.print(
            Text(
                "all checks passed" if ok else f"{failed} check(s) failed",
                style="green" if ok else "red",
            )
        )
    if not ok:
        raise click.exceptions.Exit(EXIT_PROBLEMS)
