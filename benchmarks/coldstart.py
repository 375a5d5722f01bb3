"""Cold start: what `import documee_remote` + opening an s3:// store costs over `import boto3`.

A Lambda cold start pays for every import. Each measurement is a fresh
interpreter (`python -X importtime` is not used: it slows imports down);
the median of several runs is reported, with the ratio of the two.

    python -m benchmarks.coldstart [--runs 15]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

BASELINE = (
    "import time; t = time.perf_counter(); import boto3; "
    "boto3.client('s3', region_name='us-east-1'); print(time.perf_counter() - t)"
)
OURS = (
    "import time; t = time.perf_counter(); import documee_remote; "
    "s = documee_remote.open_store('s3://bucket/prefix/', region='us-east-1'); "
    "print(time.perf_counter() - t); "
    "import sys; assert not {'s3fs', 'aiobotocore', 'aiohttp'} & set(sys.modules)"
)


def measure(code: str, runs: int) -> list[float]:
    env = {
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    return [
        float(
            subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
            ).stdout
        )
        for _ in range(runs)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    base = statistics.median(measure(BASELINE, args.runs))
    ours = statistics.median(measure(OURS, args.runs))
    result = {
        "import_boto3_and_client_ms": round(base * 1000, 1),
        "import_documee_remote_and_open_s3_store_ms": round(ours * 1000, 1),
        "extra_ms": round((ours - base) * 1000, 1),
        "target_extra_ms": 50,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
