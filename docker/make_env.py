"""Write docker/.env from docker/.env.example, filling every empty value with a fresh secret.

    python3 docker/make_env.py [--output docker/.env] [--force]

Secrets are random hex (URL-safe: the Postgres and Redis passwords go into connection URLs),
except ``*_FERNET_KEY``, which Airflow needs as a Fernet key (32 random bytes, URL-safe base64).
Standard library only: run it with any Python 3. An existing file is kept unless ``--force``.
"""

from __future__ import annotations

import argparse
import base64
import os
import secrets
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
EXAMPLE = HERE / ".env.example"


def secret_for(key: str) -> str:
    if key.endswith("FERNET_KEY"):
        return base64.urlsafe_b64encode(os.urandom(32)).decode("ascii")
    return secrets.token_hex(24)


def render(example: str) -> str:
    """The example's text with every ``KEY=`` (empty value) line given a secret."""
    lines = []
    for line in example.splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.lstrip().startswith("#") and key.strip() and not value.strip():
            line = f"{key}={secret_for(key.strip())}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--output", type=Path, default=HERE / ".env")
    parser.add_argument("--force", action="store_true", help="replace an existing file")
    args = parser.parse_args(argv)
    if args.output.exists() and not args.force:
        print(f"{args.output} exists; keeping it (--force replaces it)", file=sys.stderr)  # noqa: T201
        return 1
    text = render(EXAMPLE.read_text(encoding="utf-8"))
    fd = os.open(args.output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    print(f"wrote {args.output}")  # noqa: T201
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
