"""The REPORTs on a calendar (``gateway.service.caldav.reports``), on SQLite and PostgreSQL: multiget, calendar-query
with a time range, and sync-collection with its tokens, limits and pruning."""

from __future__ import annotations

from datetime import timedelta

import pytest

from gateway.core.calendar.ical import parse_calendar
from gateway.core.dav.preconditions import Conditions
from gateway.core.dav.requests import SyncCollection, read_report
from gateway.core.dav.xml import parse_body
from gateway.core.model import PartStat
from gateway.service import events
from gateway.service.caldav import reports, writes
from gateway.store import collections
from gateway.store.db import Database
from gateway.store.directory import PrincipalRef
from tests.conftest import NOW
from tests.service.test_caldav_tree import (
    ALICE,
    BOB,
    NS,
    TASK,
    Member,
    People,
    add_people,
    c,
    calendar,
    d,
    get,
    meeting,
    obj,
    plain,
    prop,
    put,
    refusal,
    report,
    run,
)


@pytest.fixture
def people(db: Database) -> People:
    return add_people(db)


def same_calendar(first: str, second: str) -> bool:
    return bool(parse_calendar(first).to_ical() == parse_calendar(second).to_ical())


def multiget(db: Database, actor: PrincipalRef, href: str, *hrefs: str) -> dict[str, Member]:
    listed = "".join(f"<D:href>{h}</D:href>" for h in hrefs)
    body = f"<C:calendar-multiget {NS}><D:prop><D:getetag/><C:calendar-data/></D:prop>{listed}</C:calendar-multiget>"
    return report(db, actor, href, body, reports.multiget)[0]


def query(db: Database, actor: PrincipalRef, start: str, end: str) -> dict[str, Member]:
    body = (f'<C:calendar-query {NS}><D:prop><D:getetag/></D:prop><C:filter><C:comp-filter name="VCALENDAR">'
            f'<C:comp-filter name="VEVENT"><C:time-range start="{start}" end="{end}"/></C:comp-filter>'
            "</C:comp-filter></C:filter></C:calendar-query>")
    return report(db, actor, calendar(actor.address), body, reports.query)[0]


def sync_body(token: str, limit: int | None = None) -> str:
    nresults = f"<D:limit><D:nresults>{limit}</D:nresults></D:limit>" if limit is not None else ""
    return (f"<D:sync-collection {NS}><D:sync-token>{token}</D:sync-token><D:sync-level>1</D:sync-level>"
            f"{nresults}<D:prop><D:getetag/></D:prop></D:sync-collection>")


def sync(db: Database, actor: PrincipalRef, token: str, *, limit: int | None = None,
         name: str = "default") -> tuple[dict[str, Member], str]:
    return report(db, actor, calendar(actor.address, name), sync_body(token, limit), reports.sync_collection)


def sync_refusal(db: Database, actor: PrincipalRef, token: str) -> tuple[int, str]:
    parsed = read_report(parse_body(sync_body(token).encode()))
    assert isinstance(parsed, SyncCollection)
    refused = refusal(db, actor, calendar(actor.address), lambda s, r: reports.sync_collection(s, r, parsed))
    return refused.status, refused.condition


def statuses(members: dict[str, Member]) -> dict[str, int]:
    """Each member's status: 200 for one with properties, else the status it was reported with."""
    return {href: m.status if m.status is not None else 200 for href, m in members.items()}


def delete(db: Database, actor: PrincipalRef, href: str) -> None:
    run(db, actor, href, lambda s, r: writes.delete(s, r, Conditions()))


# --- calendar-multiget ---------------------------------------------------------------------


def test_multiget_returns_the_objects_named_and_404_for_the_rest(db: Database, people: People) -> None:
    a, b = obj(ALICE, "a.ics"), obj(ALICE, "b b.ics")
    put(db, people.alice, a, plain("a"))
    put(db, people.alice, b, plain("b", "Dinner"))
    put(db, people.bob, obj(BOB, "x.ics"), plain("x"))
    missing, bobs, elsewhere = obj(ALICE, "missing.ics"), obj(BOB, "x.ics"), obj(ALICE, "a.ics", "work")
    found = multiget(db, people.alice, calendar(ALICE), a, missing, f"https://dav.foo.example{b}", bobs, elsewhere)
    assert statuses(found) == {a: 200, missing: 404, b: 200, bobs: 404, elsewhere: 404}
    for href in (a, b):
        stored = get(db, people.alice, href)
        assert found[href].text(d("getetag")) == f'"{stored.etag}"'
        assert same_calendar(found[href].found[c("calendar-data")].text or "", stored.text)


# --- calendar-query ------------------------------------------------------------------------


def test_a_time_range_query_finds_what_has_an_instance_in_the_range(db: Database, people: People) -> None:
    weekly = "RRULE:FREQ=WEEKLY;COUNT=10\r\n"
    objects = {
        "inside.ics": plain("inside", start="20260708T120000Z", end="20260708T130000Z"),
        "later.ics": plain("later", start="20260901T120000Z", end="20260901T130000Z"),
        "earlier.ics": plain("earlier", start="20260601T120000Z", end="20260601T130000Z"),
        "weekly.ics": plain("weekly", start="20260602T090000Z", end="20260602T100000Z", extra=weekly),
        "endless.ics": plain("endless", start="20250107T090000Z", end="20250107T100000Z",
                             extra="RRULE:FREQ=WEEKLY\r\n"),
        "ended.ics": plain("ended", start="20260501T090000Z", end="20260501T100000Z",
                           extra="RRULE:FREQ=WEEKLY;COUNT=2\r\n"),
        "task.ics": TASK.format(uid="task"),
    }
    for name, text in objects.items():
        put(db, people.alice, obj(ALICE, name), text)
    found = query(db, people.alice, "20260706T000000Z", "20260713T000000Z")
    assert sorted(found) == sorted(obj(ALICE, n) for n in ("inside.ics", "weekly.ics", "endless.ics"))
    weekly_etag = get(db, people.alice, obj(ALICE, "weekly.ics")).etag
    assert found[obj(ALICE, "weekly.ics")].text(d("getetag")) == f'"{weekly_etag}"'
    assert sorted(query(db, people.alice, "20260501T000000Z", "20260502T000000Z")) == [
        obj(ALICE, "ended.ics")]  # the series' first instance, alone


# --- sync-collection -----------------------------------------------------------------------


def test_an_initial_sync_lists_every_object_and_a_delta_lists_changes_and_deletions(db: Database,
                                                                                   people: People) -> None:
    hrefs = [obj(ALICE, f"{n}.ics") for n in range(3)]
    for n, href in enumerate(hrefs):
        put(db, people.alice, href, plain(f"s{n}"))
    first, token = sync(db, people.alice, "")
    assert statuses(first) == {href: 200 for href in hrefs}
    assert {h: m.text(d("getetag")) for h, m in first.items()} == {h: f'"{get(db, people.alice, h).etag}"'
                                                                  for h in hrefs}
    delete(db, people.alice, hrefs[1])
    put(db, people.alice, hrefs[2], plain("s2", "Changed"))
    added = obj(ALICE, "3.ics")
    put(db, people.alice, added, plain("s3"))
    delta, newer = sync(db, people.alice, token)
    assert statuses(delta) == {hrefs[1]: 404, hrefs[2]: 200, added: 200}
    assert delta[hrefs[2]].text(d("getetag")) == f'"{get(db, people.alice, hrefs[2]).etag}"'
    assert newer != token
    assert sync(db, people.alice, newer) == ({}, newer)
    again, _ = sync(db, people.alice, "")
    assert statuses(again) == {hrefs[0]: 200, hrefs[2]: 200, added: 200}  # an initial sync lists no deletions


def limited_rounds(db: Database, actor: PrincipalRef, token: str, limit: int) -> tuple[list[tuple[str, int]], str]:
    """Sync with ``limit`` until a round is not cut short: every member reported, in order, and the last token."""
    seen: list[tuple[str, int]] = []
    for _round in range(20):
        members, token = sync(db, actor, token, limit=limit)
        cut = members.pop(calendar(actor.address), None)
        assert len(members) <= limit
        seen.extend(statuses(members).items())
        if cut is None:
            return seen, token
        assert cut.status == 507
    raise AssertionError("the sync never finished")


@pytest.mark.parametrize("limit", [1, 2, 3])
def test_a_limited_sync_is_cut_with_a_507_and_continues_from_its_token_without_loss(db: Database, people: People,
                                                                                   limit: int) -> None:
    hrefs = [obj(ALICE, f"{n}.ics") for n in range(5)]
    for n, href in enumerate(hrefs):
        put(db, people.alice, href, plain(f"l{n}"))
    first, _ = sync(db, people.alice, "", limit=limit)
    assert statuses(first)[calendar(ALICE)] == 507 and len(first) == limit + 1
    seen, last = limited_rounds(db, people.alice, "", limit)
    assert sorted(seen) == sorted((h, 200) for h in hrefs)
    assert last == sync(db, people.alice, "")[1]
    delete(db, people.alice, hrefs[0])
    put(db, people.alice, hrefs[3], plain("l3", "Changed"))
    added = obj(ALICE, "new.ics")
    put(db, people.alice, added, plain("new"))
    delta, final = limited_rounds(db, people.alice, last, limit)
    assert sorted(delta) == sorted([(hrefs[0], 404), (hrefs[3], 200), (added, 200)])
    assert sync(db, people.alice, final) == ({}, final)


def test_a_limited_initial_sync_after_a_deletion_lists_every_object(db: Database, people: People) -> None:
    put(db, people.alice, obj(ALICE, "gone.ics"), plain("gone"))
    delete(db, people.alice, obj(ALICE, "gone.ics"))  # the oldest change is a tombstone, which counts for no limit
    hrefs = [obj(ALICE, f"{n}.ics") for n in range(3)]
    for n, href in enumerate(hrefs):
        put(db, people.alice, href, plain(f"t{n}"))
    seen, _ = limited_rounds(db, people.alice, "", limit=2)
    assert sorted(seen) == sorted((h, 200) for h in hrefs)


def test_a_token_of_another_calendar_or_one_never_given_is_refused(db: Database, people: People) -> None:
    put(db, people.alice, obj(ALICE, "a.ics"), plain("a"))
    with db.transaction() as session:
        work = collections.add_calendar(session, people.alice.id, "work", NOW)
        default = collections.calendar_named(session, people.alice.id, "default")
    assert default is not None
    _, work_token = sync(db, people.alice, "", name="work")
    for token in (work_token, f"urn:x-reefknot:sync:{default.id}:{default.sync_seq + 5}",
                  f"urn:x-reefknot:sync:{default.id}:x", "http://elsewhere.example/sync/1",
                  f"urn:x-reefknot:sync:{work.id}:0"):
        assert sync_refusal(db, people.alice, token) == (403, d("valid-sync-token")), token


def test_a_token_older_than_the_pruned_deletions_is_refused(db: Database, people: People) -> None:
    put(db, people.alice, obj(ALICE, "a.ics"), plain("a"))
    put(db, people.alice, obj(ALICE, "b.ics"), plain("b"))
    _, before = sync(db, people.alice, "")
    delete(db, people.alice, obj(ALICE, "a.ics"))
    _, after = sync(db, people.alice, "")
    assert statuses(sync(db, people.alice, before)[0]) == {obj(ALICE, "a.ics"): 404}  # not pruned yet
    with db.transaction() as session:
        assert collections.prune_tombstones(session, NOW + timedelta(days=3650)) == 1
    assert sync_refusal(db, people.alice, before) == (403, d("valid-sync-token"))
    assert sync(db, people.alice, after) == ({}, after)
    assert statuses(sync(db, people.alice, "")[0]) == {obj(ALICE, "b.ics"): 200}


def test_an_answer_applied_by_the_engine_moves_the_organizers_token_on(db: Database, people: People) -> None:
    href = obj(ALICE, "review.ics")
    put(db, people.alice, href, meeting("review", BOB))
    _, token = sync(db, people.alice, "")
    assert prop(db, people.alice, calendar(ALICE), d("sync-token")).text(d("sync-token")) == token
    with db.transaction() as session:
        events.reply_event(session, people.bob, "review", PartStat.ACCEPTED, NOW)
    delta, newer = sync(db, people.alice, token)
    assert statuses(delta) == {href: 200}
    assert delta[href].text(d("getetag")) == f'"{get(db, people.alice, href).etag}"'
    assert newer != token
