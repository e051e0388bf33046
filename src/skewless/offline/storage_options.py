"""delta-rs storage options for ``s3://`` tables, taken from the standard AWS environment."""

from __future__ import annotations

import os

# Environment variable -> delta-rs option, in precedence order (the first one set wins), as the
# AWS SDKs read them: AWS_REGION over AWS_DEFAULT_REGION, the S3-specific endpoint over the
# global one.
_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY": "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN": "AWS_SESSION_TOKEN",
    "AWS_REGION": "AWS_REGION",
    "AWS_DEFAULT_REGION": "AWS_REGION",
    "AWS_ENDPOINT_URL_S3": "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL": "AWS_ENDPOINT_URL",
}


def storage_options(uri: str) -> dict[str, str] | None:
    """Options for delta-rs; None for local paths. Credentials never leave the environment."""
    if not uri.startswith(("s3://", "s3a://")):
        return None
    options: dict[str, str] = {}
    for env_name, option in _AWS_ENV.items():
        if value := os.environ.get(env_name):
            options.setdefault(option, value)
    endpoint = options.get("AWS_ENDPOINT_URL", "")
    if endpoint.startswith("http://"):
        options["AWS_ALLOW_HTTP"] = "true"
    # Single-writer per table (commits are serialised per table by the job), so no lock service.
    options.setdefault("AWS_S3_ALLOW_UNSAFE_RENAME", "true")
    return options
