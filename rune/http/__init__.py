"""The HTTP API of ``rune serve`` (aiohttp, on the service's event loop): contract-v1
authorize, events, bundles, lookups; health, metrics, admin. The documents in ``spec/``
(OpenAPI for HTTP, AsyncAPI for the topics) describe it and are checked against it by tests."""

from rune.http.app import create_app
from rune.http.runtime import RUNTIME, Runtime

__all__ = ["RUNTIME", "Runtime", "create_app"]
