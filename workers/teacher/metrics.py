"""Prometheus metrics of one teacher worker, on its own registry."""

from __future__ import annotations

import logging

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    start_http_server,
)

log = logging.getLogger(__name__)

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class TeacherMetrics:
    def __init__(self, task: str) -> None:
        self.registry = r = CollectorRegistry()
        self.task = task
        t = ["task"]
        self.calls = Counter("distillery_teacher_calls_total", "Teacher calls made, by outcome",
                             ["task", "outcome"], registry=r)
        self.failures = Counter("distillery_teacher_failures_total",
                                "Failed teacher calls, by kind", ["task", "kind"], registry=r)
        self.retries = Counter("distillery_teacher_retries_total",
                               "Teacher calls retried", t, registry=r).labels(task)
        self.breaker = Gauge("distillery_teacher_breaker_state",
                             "Circuit breaker: 0 closed, 1 half-open, 2 open", t,
                             registry=r).labels(task)
        self.breaker_opened = Counter("distillery_teacher_breaker_opened_total",
                                      "Times the breaker opened, by cause (unavailable, "
                                      "rejected:<kind>)", ["task", "cause"], registry=r)
        self.budget_calls_left = Gauge("distillery_teacher_budget_calls_left",
                                       "Calls left in the current minute", t,
                                       registry=r).labels(task)
        self.budget_cost_left = Gauge("distillery_teacher_budget_cost_left",
                                      "Cost left in the current hour", t,
                                      registry=r).labels(task)
        self.budget_calls_cap = Gauge("distillery_teacher_budget_calls_cap",
                                      "Calls allowed a minute "
                                      "(DISTILLERY_TEACHER_CALLS_PER_MINUTE)", t,
                                      registry=r).labels(task)
        self.budget_cost_cap = Gauge("distillery_teacher_budget_cost_cap",
                                     "Cost allowed an hour (DISTILLERY_TEACHER_COST_PER_HOUR)", t,
                                     registry=r).labels(task)
        self.paused = Gauge("distillery_teacher_paused",
                            "1 while the worker has stopped consuming", t,
                            registry=r).labels(task)
        self.latency = Histogram("distillery_teacher_latency_seconds",
                                 "Latency of successful teacher calls", t, registry=r,
                                 buckets=_LATENCY_BUCKETS).labels(task)
        self.cost = Counter("distillery_teacher_cost_total",
                            "Money spent on teacher calls", t, registry=r).labels(task)
        self.tokens = Counter("distillery_teacher_tokens_total", "Tokens billed, by direction",
                              ["task", "direction"], registry=r)
        self.outcomes = Counter("distillery_teacher_outcomes_total",
                                "Requests finished, by outcome (answer, fallback, dead, replayed)",
                                ["task", "outcome"], registry=r)
        self.dead_letters = Counter("distillery_teacher_dead_letters_total",
                                    "Requests dead-lettered, by error kind", ["task", "kind"],
                                    registry=r)
        self.inflight = Gauge("distillery_teacher_inflight", "Requests being worked on", t,
                              registry=r).labels(task)

    def call(self, outcome: str, cost: float = 0.0, tokens_in: int = 0,
             tokens_out: int = 0) -> None:
        self.calls.labels(self.task, outcome).inc()
        if cost > 0:
            self.cost.inc(cost)
        if tokens_in:
            self.tokens.labels(self.task, "in").inc(tokens_in)
        if tokens_out:
            self.tokens.labels(self.task, "out").inc(tokens_out)

    def failure(self, kind: str) -> None:
        self.failures.labels(self.task, kind).inc()

    def outcome(self, kind: str) -> None:
        self.outcomes.labels(self.task, kind).inc()

    def serve(self, port: int) -> None:
        """Expose ``/metrics`` on ``port`` (0: do not)."""
        if port:
            start_http_server(port, registry=self.registry)
            log.info("teacher metrics on :%s/metrics", port)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def value(self, name: str, **labels: str) -> float:
        """A sample's current value (0 if absent), for tests and reports."""
        found = self.registry.get_sample_value(name, {"task": self.task, **labels})
        return float(found or 0.0)
