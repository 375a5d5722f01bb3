"""A full S3 job at DEBUG, run as its own process by test_secrets.py.

``python -m tests.faults._secret_job ENDPOINT ROLE_ARN CREDS_OUT [--no-redaction]``

Logs everything at DEBUG to stderr, with the redaction the library installs
by itself when it creates an S3 client (or, with ``--no-redaction``, the
control run, without it), prints the text of every error, traceback and repr it meets to
stdout, and writes the assumed role's credentials to ``CREDS_OUT`` (never to
stdout or stderr), so the parent can grep both streams for every secret.
"""

from __future__ import annotations

import json
import logging
import sys
import traceback

from documee_remote import PersistenceManager, RetryPolicy
from documee_remote.errors import DocumeeRemoteError
from documee_remote.layout import file_analysis_key
from documee_remote.stores.s3 import S3Store

from ._helpers import versioned

MARKER = "BODY-MARKER-q7Zr2"
EXTERNAL_ID = "ext-id-secret-Xk39fQ"
PASSWORD = "pa55word"
# Built here so that tracebacks (which quote the failing source line) do not show it.
URL_WITH_PASSWORD = "s3://user:" + PASSWORD + "@documee-test/x"


def main(argv: list[str]) -> None:
    endpoint, role_arn, creds_out = argv[:3]
    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr, format="%(name)s %(message)s")
    if "--no-redaction" in argv:
        import documee_remote.redact

        # The control run: take the library's own default away.
        documee_remote.redact.install_redaction = lambda *a, **k: None  # type: ignore[assignment]
    texts: list[str] = []

    def keep(exc: BaseException) -> None:
        texts.extend([str(exc), repr(exc), "".join(traceback.format_exception(exc))])

    store = S3Store.from_url(
        "s3://documee-test/secrets/",
        endpoint_url=endpoint,
        region="us-east-1",
        role_arn=role_arn,
        external_id=EXTERNAL_ID,
        max_attempts=3,
    )
    pm = PersistenceManager(store, retry=RetryPolicy(base_delay=0.001, max_delay=0.01))
    for i in range(3):
        path = f"/src/f{i}.py"
        pm.merge_file_analyses("cb", {path: versioned(path, i, marker=MARKER)}, {path: "h" * 64})
    for call in (
        lambda: store.put("cb/denied.json", MARKER.encode()),
        lambda: store.get("cb/nope.json"),
        lambda: store.put("cb/analysis.json", b"{}", if_none_match="*"),
        lambda: S3Store.from_url(URL_WITH_PASSWORD),
    ):
        try:
            call()
        except DocumeeRemoteError as exc:
            keep(exc)
    store.put(file_analysis_key("cb", "/corrupt.py"), json.dumps({"file_path": MARKER}).encode())
    try:
        pm.load_file_analysis("cb", "/corrupt.py")
    except DocumeeRemoteError as exc:
        keep(exc)
    loaded = pm.load_analysis("cb")
    assert loaded is not None
    assert len(pm.load_file_analyses("cb", list(loaded.file_analyses))) == 3
    texts.append(json.dumps(pm.verify("cb", repair=True, grace_seconds=0).to_dict()))
    with pm.lease("cb", ttl=3) as lease:
        lease.renew()
        pm.merge_file_analyses(
            "cb",
            {"/src/l.py": versioned("/src/l.py", 9, marker=MARKER)},
            {},
            fencing_token=lease.token,
        )
        texts.append(repr(lease))
    texts.append(json.dumps(pm.gc("cb", grace_seconds=0).to_dict()))
    texts += [
        repr(store),
        str(store),
        repr(pm),
        repr(store.options),
        repr(store.get("cb/analysis.json")),
    ]
    credentials = store.client._request_signer._credentials.get_frozen_credentials()  # type: ignore[attr-defined]
    with open(creds_out, "w", encoding="utf-8") as f:
        json.dump(
            {
                "access_key": credentials.access_key,
                "secret_key": credentials.secret_key,
                "token": credentials.token,
            },
            f,
        )
    store.close()
    print("\n".join(texts))
    print("JOB-DONE")


if __name__ == "__main__":
    main(sys.argv[1:])
