"""TLS, loaded when something first speaks it (a TLS probe, an etcd on https).

asyncio imports `ssl` when it is imported (OpenSSL's libraries mapped and initialised: about
4.5 MB of the daemon's RSS), although a deployment without a TLS probe never uses it. So asyncio
is imported with `ssl` hidden (`without_ssl`, once, from the package's __init__); `asyncio_tls`
imports it and gives it to asyncio's modules before the first TLS connection."""

from __future__ import annotations

import importlib
import sys
from types import ModuleType


def asyncio_without_ssl() -> None:
    """Import asyncio without ssl, unless either is already imported (then nothing to save)."""
    if "asyncio" in sys.modules or "ssl" in sys.modules:
        return
    sys.modules["ssl"] = None  # type: ignore[assignment]  # `import ssl` raises ImportError meanwhile
    try:
        import asyncio  # noqa: F401
    finally:
        if sys.modules.get("ssl", 0) is None:
            del sys.modules["ssl"]


def asyncio_tls() -> ModuleType:
    """The ssl module, asyncio able to use it (a no-op once done)."""
    import ssl
    modules = [m for name, m in list(sys.modules.items()) if name.startswith("asyncio.") and m is not None]
    if any(getattr(m, "ssl", ssl) is None for m in modules):
        for module in modules:
            if getattr(module, "ssl", ssl) is None:
                module.ssl = ssl  # type: ignore[attr-defined]
        if "asyncio.sslproto" in sys.modules:
            importlib.reload(sys.modules["asyncio.sslproto"])  # its names made only when ssl imports
    return ssl
