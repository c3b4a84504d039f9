"""Cost of auditing one decision (metrics, JSON log line, pseudonyms, request fields).

    python3 perf/bench_audit.py [--decisions 20000]

Prints microseconds per decision for each ``[logging]`` setting (log lines to /dev/null);
asserts nothing. Compare with the decision itself (``bench_authorizer.py``: ~20 us p50).
"""

from __future__ import annotations

import argparse
import os
import time

from rune.config import Logging
from rune.ops.audit import Audit
from rune.ops.logs import configure_logging
from rune.ops.metrics import Metrics
from rune.policies.decision import Decision

REQUEST = {
    "id": "r1",
    "principal": {"type": "User", "id": "alice"},
    "action": {"type": "Action", "id": "read"},
    "resource": {"type": "Doc", "id": "d1"},
}


def decision() -> Decision:
    return Decision("r1", True, ("datalog:allow",), (), 1, {"rune.facts": {"0": 12}}, 40)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--decisions", type=int, default=20_000)
    n = p.parse_args().decisions
    key = "k" * 32
    cases = {
        'decisions = "none"': Logging(decisions="none"),
        'decisions = "all"': Logging(decisions="all"),
        '"all" + include_request': Logging(decisions="all", include_request=True),
        '"all" + include_request + pseudonymize': Logging(
            decisions="all", include_request=True, pseudonymize=True, pseudonym_key=key
        ),
    }
    with open(os.devnull, "w") as sink:
        for label, cfg in cases.items():
            configure_logging(cfg, sink)
            audit = Audit(cfg, Metrics())
            decisions = [decision() for _ in range(n)]
            start = time.perf_counter()
            audit.decided([REQUEST] * n, decisions, "kafka")
            print(f"{label:<40} {(time.perf_counter() - start) / n * 1e6:6.1f} us/decision")
    configure_logging(Logging())


if __name__ == "__main__":
    main()
