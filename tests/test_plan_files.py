"""Plans between the store and the YAML files: ``cadence plan-import`` / ``plan-export``,
which one wins, and ``cadence forget`` erasing a stored plan and its history."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from typer.testing import CliRunner

from agent.app.cli import app
from agent.settings import config, idp
from agent.store.directory import DirectoryRows
from agent.store.plans import PlanRows
from agent.store.sqlite import Store
from agent.tick.plans import Plans

runner = CliRunner()
EMMA = "emma@acme.example"


def cadence(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def test_import_puts_the_files_in_the_store_and_the_store_wins(workspace: Path) -> None:
    code, out = cadence("plan-import", "--config", str(workspace))
    assert code == 0, out
    assert "3 plan(s) imported" in out
    store = Store(workspace.parent / "var" / "cadence.db")
    try:
        stored = PlanRows(store).get(EMMA)
        assert stored is not None and stored.version == 1 and stored.updated_by == "plan-import"
        # the file changes; the store's plan is the one the ticks use
        plan_file = workspace.parent / "plans" / "emma.yaml"
        plan_file.write_text(plan_file.read_text().replace("calmly", "fast"))
        settings = config.load(workspace)
        plans, _ = Plans().load(settings, [settings.people[EMMA]], store)
        assert plans[EMMA] is not None and "calmly" in (plans[EMMA].purpose or "")
    finally:
        store.close()
    code, out = cadence("plan-import", EMMA, "--config", str(workspace))
    assert code == 0 and "version 2" in out, out
    code, out = cadence("plan-import", EMMA, "--config", str(workspace))
    assert "unchanged" in out  # no history row for a save that changes nothing
    store = Store(workspace.parent / "var" / "cadence.db")
    history = PlanRows(store).history(EMMA)
    store.close()
    assert [h.version for h in history] == [2, 1]
    assert [c["field"] for c in history[0].changes] == ["purpose"]


def test_export_writes_files_that_load_back_to_the_same_plan(workspace: Path) -> None:
    settings = config.load(workspace)
    store = Store(settings.store)
    plan = idp.load(settings.resolve("plans/emma.yaml"))
    changed = plan.model_copy(update={"purpose": "Grow a team that ships calmly."})
    PlanRows(store).save(EMMA, changed, by=EMMA, how="web", now=datetime.now(UTC))
    store.close()
    code, out = cadence("plan-export", "--config", str(workspace))
    assert code == 0 and "1 plan(s) exported" in out, out
    assert idp.load(settings.resolve("plans/emma.yaml")) == changed
    code, out = cadence("check", "--config", str(workspace))
    assert code == 0, out


def test_import_refuses_a_broken_file_and_names_the_line(workspace: Path) -> None:
    plan_file = workspace.parent / "plans" / "farid.yaml"
    plan_file.write_text(plan_file.read_text().replace("due: 2027-03-01", "due: someday"))
    code, out = cadence("plan-import", "--config", str(workspace))
    assert code == 2
    assert "farid.yaml:" in out and "nothing imported" in out
    store = Store(workspace.parent / "var" / "cadence.db")
    assert PlanRows(store).all() == {}
    store.close()


def test_forget_erases_the_stored_plan_and_its_history(workspace: Path) -> None:
    assert cadence("plan-import", "--config", str(workspace))[0] == 0
    store = Store(workspace.parent / "var" / "cadence.db")
    try:
        counts = DirectoryRows(store).forget(EMMA, datetime.now(UTC))
        assert counts["plans"] == 1 and counts["plan_history"] == 1
        assert PlanRows(store).get(EMMA) is None and PlanRows(store).history(EMMA) == []
        assert PlanRows(store).get("ana@acme.example") is not None
    finally:
        store.close()


def test_a_plan_saved_in_the_store_is_quoted_in_the_next_agenda(workspace: Path) -> None:
    """What a new user does in the browser shows in the next agenda: the store's plan."""
    import email
    from datetime import timedelta
    from email import policy

    from tests.conftest import NOW

    assert cadence("run", "--once", "--config", str(workspace), "--now", NOW.isoformat())[0] == 0
    settings = config.load(workspace)
    store = Store(settings.store)
    try:
        with_plans = {"ana@acme.example", EMMA, "farid@acme.example"}
        upcoming = sorted(
            (b for b in store.bookings() if b.status == "booked" and b.start and b.start > NOW + timedelta(days=1)
             and b.relationship.split("/")[0] in with_plans),
            key=lambda b: b.start,  # type: ignore[arg-type,return-value]
        )  # fmt: skip
        assert upcoming
        booking = upcoming[0]
        employee = booking.relationship.split("/")[0]
        plan = idp.load(settings.resolve(f"plans/{employee.split('@')[0]}.yaml"))
        purpose = "Speak at a conference, a goal written on the web"  # every agenda quotes goals
        goals = [*plan.goals, idp.Goal(title=purpose)]
        PlanRows(store).save(
            employee, plan.model_copy(update={"goals": goals}), by=employee, how="web", now=NOW
        )
    finally:
        store.close()
    assert booking.start is not None
    when = (booking.start - timedelta(hours=20)).isoformat()
    assert cadence("run", "--once", "--config", str(workspace), "--now", when)[0] == 0
    agendas = list((workspace.parent / "outbox").glob(f"{booking.key}*agenda*.eml"))
    assert agendas, sorted(p.name for p in (workspace.parent / "outbox").iterdir())
    msg = email.message_from_bytes(agendas[0].read_bytes(), policy=policy.default)
    body = msg.get_body(("plain",))
    assert body is not None and purpose in body.get_content()
