"""Retention settings reach the dispatcher as its RETENTION_* variables, and the schema
refuses windows the dispatcher would refuse."""
import pytest

from helm_render import containers, render


def dispatcher_env(values=None):
    (container,) = containers(render(values)["Deployment/centaur-centaur-dispatcher"])
    return {entry["name"]: entry.get("value") for entry in container["env"]}


def test_the_default_windows_are_given_to_the_dispatcher():
    env = dispatcher_env()
    assert env["RETENTION_EXECUTIONS_DAYS"] == "30"
    assert env["RETENTION_IDEMPOTENCY_DAYS"] == "7"
    assert env["RETENTION_QUEUE_DAYS"] == "1"
    assert env["RETENTION_OUTBOX_DAYS"] == "7"
    assert env["RETENTION_AUDIT_DAYS"] == "90"
    assert env["RETENTION_INTERVAL_S"] == "60"
    assert env["RETENTION_BATCH_SIZE"] == "500"


def test_a_window_can_be_turned_off():
    env = dispatcher_env({"retention": {"executionsDays": "off", "queueDays": 0}})
    assert env["RETENTION_EXECUTIONS_DAYS"] == "off"
    assert env["RETENTION_QUEUE_DAYS"] == "0"
    assert env["RETENTION_IDEMPOTENCY_DAYS"] == "7"


@pytest.mark.parametrize(
    "retention",
    [{"executionsDays": "thirty"}, {"outboxDays": -1}, {"auditDays": "forever"}, {"batchSize": 0}, {"intervalSeconds": 0}, {"keepForever": True}],
)
def test_the_schema_refuses_what_the_dispatcher_would(retention):
    with pytest.raises(Exception, match="retention"):
        render({"retention": retention})
