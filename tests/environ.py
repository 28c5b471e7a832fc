"""The host's environment variables no test may see: proxies, CA-bundle overrides and
provider credentials. One list, used by the autouse fixture in tests/conftest.py and by
the provider harnesses that also run outside a test (benchmarks, contract backends)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

HOST_VARIABLES = frozenset(
    {
        "REQUESTS_CA_BUNDLE",
        "CURL_CA_BUNDLE",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "OAUTHLIB_INSECURE_TRANSPORT",
    }
)


def is_host_variable(name: str) -> bool:
    upper = name.upper()
    return (
        upper.endswith("_PROXY")
        or upper in HOST_VARIABLES
        or upper.startswith(("GOOGLE_", "AZURE_"))
    )


@contextmanager
def clean_environ() -> Iterator[None]:
    """Hide the host's variables for the duration, then put them back."""
    saved = {name: os.environ.pop(name) for name in list(os.environ) if is_host_variable(name)}
    try:
        yield
    finally:
        for name in [n for n in os.environ if is_host_variable(n)]:
            del os.environ[name]
        os.environ.update(saved)
