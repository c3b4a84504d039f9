"""RUNE: a Kafka-native streaming authorization engine (incremental Datalog + Cedar).

Layout, in pipeline order: :mod:`rune.connectors` (logs: Kafka, embedded, files) ->
:mod:`rune.streams` (the service) -> :mod:`rune.ivm` (incremental Datalog) and
:mod:`rune.policies` (bundles, Cedar, decisions), with :class:`Authorizer` as the embedded
facade.
"""

from rune.authorizer import Authorizer
from rune.errors import RuneError

__all__ = ["Authorizer", "RuneError"]
