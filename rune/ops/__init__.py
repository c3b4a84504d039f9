"""Operations: structured logs, audit records of decisions (with pseudonymization), metrics."""

from rune.ops.audit import Audit, Pseudonymizer
from rune.ops.logs import configure_logging
from rune.ops.metrics import Metrics

__all__ = ["Audit", "Metrics", "Pseudonymizer", "configure_logging"]
