"""The fake ``agora`` package (agora-python-server-sdk 2.4.10 stand-in for tests only).

It is never installed: tests/fake_agora/__init__.py links this directory into a
temporary directory as ``agora/`` and puts that on ``sys.path``. Unlike the real
package, importing it downloads nothing, prints nothing and exits nothing (the
loader's own tests reproduce those traps: docs/providers.md,
"Agora: loading the SDK").
"""

# The real agora/__init__.py hard-codes its download URL in _check_download_and_extract_sdk;
# version.txt must equal it (recorder.transport.agora.preflight reads it without importing).
FAKE_DOWNLOAD_URL = "https://download.agora.io/sdk/release/fake-agora-for-tests.zip"


def _check_download_and_extract_sdk() -> None:
    """Never called: shaped like the real one so the pre-flight can read its URL."""
    url = "https://download.agora.io/sdk/release/fake-agora-for-tests.zip"  # = FAKE_DOWNLOAD_URL
    del url
