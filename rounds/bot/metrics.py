"""Prometheus metrics, in a registry of Rounds' own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

COMMANDS = Counter(
    "rounds_commands_total",
    "Commands handled, by command and outcome.",
    ["command", "outcome"],
    registry=REGISTRY,
)
COMMAND_SECONDS = Histogram(
    "rounds_command_seconds",
    "Time to handle a command.",
    registry=REGISTRY,
    buckets=(0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
OUTBOX_SENT = Counter(
    "rounds_outbox_sent_total", "Messages the platforms accepted.", ["platform"], registry=REGISTRY
)
OUTBOX_FAILED = Counter(
    "rounds_outbox_failed_total",
    "Send attempts that failed.",
    ["platform", "kind"],
    registry=REGISTRY,
)
