"""The decision layer: policy bundles, entities, the decision function, cache, reverse queries.

See ``docs/authorizer.md``. The facade over all of it is :class:`rune.Authorizer`.
"""

from rune.policies.bundle import Bundle, compile_bundle
from rune.policies.cache import CacheStats, DecisionCache
from rune.policies.errors import (
    BundleError,
    EventError,
    NoBundleError,
    PolicyError,
    RequestError,
    StaleBundleError,
)
from rune.policies.lookup import Page

__all__ = [
    "Bundle",
    "BundleError",
    "CacheStats",
    "DecisionCache",
    "EventError",
    "NoBundleError",
    "Page",
    "PolicyError",
    "RequestError",
    "StaleBundleError",
    "compile_bundle",
]
