"""``python -m rune.cli`` (used to start worker processes)."""

from rune.cli import main

main()
