"""Calendar collections and their change logs (``gateway.store.collections``), on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest

from gateway.store import collections, directory
from gateway.store.collections import CalendarInfo, MemberChange
from gateway.store.db import Database
from tests.conftest import NOW

DAY = timedelta(days=1)


@pytest.fixture
def two(db: Database) -> tuple[CalendarInfo, CalendarInfo]:
    """Alice's default calendar and a second one, "work"."""
    with db.transaction() as session:
        alice = directory.add_principal(session, "alice@foo.example", NOW)
        default = collections.default_calendar(session, alice.id, NOW)
        work = collections.add_calendar(session, alice.id, "work", NOW, components=("VTODO",))
    return default, work


def info(db: Database, calendar: CalendarInfo) -> CalendarInfo:
    with db.transaction() as session:
        found = collections.calendar_by_id(session, calendar.id)
    assert found is not None
    return found


def record(db: Database, calendar: CalendarInfo, href: str, *, deleted: bool = False, days: int = 0) -> int:
    with db.transaction() as session:
        return collections.record_change(session, calendar.id, href, NOW + days * DAY, deleted=deleted)


def changes(db: Database, calendar: CalendarInfo, since: int = 0, limit: int | None = None) -> list[MemberChange]:
    with db.transaction() as session:
        return collections.changes_since(session, calendar.id, since, limit)


def test_a_new_principal_has_one_default_calendar_and_calendars_list_it_first(
        db: Database, two: tuple[CalendarInfo, CalendarInfo]) -> None:
    default, work = two
    with db.transaction() as session:
        assert collections.default_calendar(session, default.principal_id, NOW) == default  # not made twice
        listed = collections.calendars_of(session, default.principal_id)
        collections.add_calendar(session, default.principal_id, "aaa", NOW)
        assert [c.name for c in collections.calendars_of(session, default.principal_id)] == ["default", "aaa", "work"]
    assert [c.name for c in listed] == ["default", "work"]
    assert default.is_default and not work.is_default
    assert (default.sync_seq, default.pruned_through, work.components) == (0, 0, ("VTODO",))


def test_change_counts_are_per_calendar_and_only_go_up(db: Database, two: tuple[CalendarInfo, CalendarInfo]) -> None:
    default, work = two
    counts = [record(db, default, "a.ics"), record(db, work, "a.ics"), record(db, default, "b.ics"),
              record(db, default, "a.ics"), record(db, work, "x.ics"), record(db, default, "a.ics", deleted=True)]
    assert counts == [1, 1, 2, 3, 2, 4]
    assert (info(db, default).sync_seq, info(db, work).sync_seq) == (4, 2)


def test_a_member_has_one_change_row_at_its_latest_count(db: Database, two: tuple[CalendarInfo, CalendarInfo]) -> None:
    default, _ = two
    for href in ("a.ics", "b.ics", "c.ics"):
        record(db, default, href)
    record(db, default, "a.ics")
    record(db, default, "b.ics", deleted=True)
    assert changes(db, default) == [MemberChange("c.ics", 3, False), MemberChange("a.ics", 4, False),
                                    MemberChange("b.ics", 5, True)]


@pytest.mark.parametrize(("since", "limit", "expected"), [
    (0, None, ["a", "b", "c", "d"]),
    (0, 2, ["a", "b"]),
    (2, None, ["c", "d"]),
    (2, 1, ["c"]),
    (4, None, []),
])
def test_changes_since_a_count_come_oldest_first_up_to_the_limit(db: Database, two: tuple[CalendarInfo, CalendarInfo],
                                                                 since: int, limit: int | None,
                                                                 expected: list[str]) -> None:
    default, work = two
    for name in "abcd":
        record(db, default, f"{name}.ics")
        record(db, work, f"{name}-work.ics")
    assert [c.href for c in changes(db, default, since, limit)] == [f"{n}.ics" for n in expected]


def test_pruning_forgets_only_old_deletions_and_raises_the_pruned_mark(
        db: Database, two: tuple[CalendarInfo, CalendarInfo]) -> None:
    default, work = two
    record(db, default, "live-old.ics")                          # 1, a member still there
    record(db, default, "gone-old.ics")                          # 2
    record(db, default, "gone-old.ics", deleted=True)            # 3, deleted on day 0
    record(db, default, "gone-new.ics", days=10)                 # 4
    record(db, default, "gone-new.ics", deleted=True, days=10)   # 5, deleted on day 10
    record(db, work, "gone-work.ics")
    record(db, work, "gone-work.ics", deleted=True)              # work: 2, deleted on day 0
    with db.transaction() as session:
        assert collections.prune_tombstones(session, NOW + 35 * DAY, days=30, calendar_id=default.id) == 1
    assert [c.href for c in changes(db, default)] == ["live-old.ics", "gone-new.ics"]
    assert (info(db, default).pruned_through, info(db, default).sync_seq) == (3, 5)  # pruning counts no change
    assert (info(db, work).pruned_through, [c.href for c in changes(db, work)]) == (0, ["gone-work.ics"])
    with db.transaction() as session:
        assert collections.prune_tombstones(session, NOW + 35 * DAY, days=30) == 1  # every calendar: work's
        assert collections.prune_tombstones(session, NOW + 35 * DAY, days=30) == 0
    assert (info(db, default).pruned_through, info(db, work).pruned_through) == (3, 2)
    with db.transaction() as session:
        assert collections.prune_tombstones(session, NOW + 100 * DAY, days=30) == 1
    assert info(db, default).pruned_through == 5
    assert [c.href for c in changes(db, default)] == ["live-old.ics"]


def test_a_deletion_forgets_its_calendars_expired_deletions(db: Database,
                                                            two: tuple[CalendarInfo, CalendarInfo]) -> None:
    default, work = two
    for calendar in (default, work):
        record(db, calendar, "old.ics")
        record(db, calendar, "old.ics", deleted=True)
    record(db, default, "new.ics", days=collections.TOMBSTONE_DAYS + 1)
    record(db, default, "new.ics", deleted=True, days=collections.TOMBSTONE_DAYS + 1)
    assert [c.href for c in changes(db, default)] == ["new.ics"]
    assert info(db, default).pruned_through == 2
    assert ([c.href for c in changes(db, work)], info(db, work).pruned_through) == (["old.ics"], 0)


def test_a_member_put_back_after_its_deletion_is_no_tombstone(db: Database,
                                                              two: tuple[CalendarInfo, CalendarInfo]) -> None:
    default, _ = two
    record(db, default, "a.ics")
    record(db, default, "a.ics", deleted=True)
    record(db, default, "a.ics", days=1)
    with db.transaction() as session:
        assert collections.prune_tombstones(session, NOW + 365 * DAY) == 0
    assert changes(db, default) == [MemberChange("a.ics", 3, False)]
    assert info(db, default).pruned_through == 0


def test_updating_a_calendar_counts_a_change_and_removing_it_takes_its_log(
        db: Database, two: tuple[CalendarInfo, CalendarInfo]) -> None:
    default, work = two
    record(db, work, "a.ics")
    with db.transaction() as session:
        collections.update_calendar(session, work.id, display_name="Work", color="#112233FF", sort_order=2)
    updated = info(db, work)
    assert (updated.display_name, updated.color, updated.sort_order, updated.sync_seq) == ("Work", "#112233FF", 2, 2)
    with db.transaction() as session:
        collections.remove_calendar(session, work.id)
        assert collections.calendar_by_id(session, work.id) is None
        assert collections.calendar_named(session, work.principal_id, "work") is None
        assert collections.count_changes_since(session, work.id, 0) == 0
    assert info(db, default).sync_seq == 0
