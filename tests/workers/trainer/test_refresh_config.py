"""An audit stands for 1/audit_rate items at the rate the task was audited at: a task's own
``policy.audit_rate`` (what its workers route with) weighs its audits, not the global one."""

from __future__ import annotations

from distillery.settings import Settings
from distillery.tasks import TICKETS
from workers.trainer.refresh import refresh_config


def test_a_task_audited_at_its_own_rate_weighs_its_audits_by_it() -> None:
    settings = Settings(audit_rate=0.02)
    assert refresh_config(settings).audit_rate == 0.02
    assert refresh_config(settings, task=TICKETS).audit_rate == 0.02  # no override
    own = TICKETS.model_copy(update={"policy": TICKETS.policy.model_copy(
        update={"audit_rate": 0.1})})
    assert refresh_config(settings, task=own).audit_rate == 0.1
