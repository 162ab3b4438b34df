"""What a CalDAV client changes (``gateway.service.caldav.writes``), on SQLite and PostgreSQL: PUT and DELETE with
their scheduling, calendars made, patched and removed, and every refusal with its precondition."""

from __future__ import annotations

import pytest
from icalendar import Calendar, Component

from gateway.core.calendar.ical import components_of, find_attendee, parse_calendar, partstat_of, serialize_calendar
from gateway.core.dav.preconditions import Conditions
from gateway.core.dav.requests import read_mkcol, read_proppatch
from gateway.core.dav.xml import DavError, parse_body
from gateway.service.caldav import tree, writes
from gateway.store import calendars, collections, inbox
from gateway.store.db import Database
from gateway.store.directory import PrincipalRef
from tests.service.test_caldav_tree import (
    ALICE,
    BOB,
    NO_CONDITIONS,
    NS,
    TASK,
    People,
    add_people,
    apple,
    c,
    calendar,
    d,
    get,
    home,
    meeting,
    obj,
    plain,
    prop,
    propfind,
    put,
    read_members,
    refusal,
    run,
)


@pytest.fixture
def people(db: Database) -> People:
    return add_people(db)


def copy_of(db: Database, principal: PrincipalRef, uid: str) -> Calendar | None:
    with db.transaction() as session:
        return calendars.load_object(session, principal.id, uid).calendar


def component_of(db: Database, principal: PrincipalRef, uid: str) -> Component:
    """The one component of the principal's copy."""
    copy = copy_of(db, principal, uid)
    assert copy is not None, f"{principal.address} has no {uid}"
    (component,) = components_of(copy)
    return component


def partstat(copy: Calendar | None, attendee: str) -> str:
    assert copy is not None
    (component,) = components_of(copy)
    found = find_attendee(component, attendee)
    assert found is not None, f"{attendee} not in the copy"
    return partstat_of(found)


def answered(text: str, attendee: str, value: str) -> str:
    """The attendee's client's copy with only its own PARTSTAT changed."""
    copy = parse_calendar(text)
    (component,) = components_of(copy)
    found = find_attendee(component, attendee)
    assert found is not None
    found.params["PARTSTAT"] = value
    return serialize_calendar(copy)


def delete(db: Database, actor: PrincipalRef, href: str, conditions: Conditions = NO_CONDITIONS,
           *, schedule_reply: bool = True) -> None:
    run(db, actor, href, lambda s, r: writes.delete(s, r, conditions, schedule_reply=schedule_reply))


def mkcalendar(db: Database, actor: PrincipalRef, href: str, props: str = "") -> None:
    body = f"<C:mkcalendar {NS}><D:set><D:prop>{props}</D:prop></D:set></C:mkcalendar>" if props else ""
    update = read_mkcol(parse_body(body.encode()), calendar=True)
    run(db, actor, href, lambda s, r: writes.make_calendar(s, r, update))


def proppatch(db: Database, actor: PrincipalRef, href: str, props: str) -> dict[str, int]:
    """Each property's status in the PROPPATCH's multistatus member."""
    update = read_proppatch(parse_body(f"<D:propertyupdate {NS}><D:set><D:prop>{props}</D:prop></D:set>"
                                       "</D:propertyupdate>".encode()))
    member = run(db, actor, href, lambda s, r: writes.patch_calendar(s, r, update))
    (found,) = read_members([member]).values()
    return found.codes


def invite_bob(db: Database, people: People, uid: str = "review", href: str = "") -> str:
    """Alice PUTs a meeting with Bob; the href of Bob's copy, in his default calendar."""
    put(db, people.alice, href or obj(ALICE, f"{uid}-alice.ics"), meeting(uid, BOB))
    bobs = obj(BOB, f"{uid}.ics")
    assert partstat(copy_of(db, people.bob, uid), BOB) == "NEEDS-ACTION"
    return bobs


def refused_put(db: Database, actor: PrincipalRef, href: str, body: str | bytes,
                conditions: Conditions = NO_CONDITIONS) -> DavError:
    raw = body.encode() if isinstance(body, str) else body
    return refusal(db, actor, href, lambda s, r: writes.put_object(s, r, raw, conditions))


# --- PUT ------------------------------------------------------------------------------------


def test_a_put_creates_then_replaces_under_the_name_the_client_chose(db: Database, people: People) -> None:
    href = "/dav/calendars/alice@foo.example/default/My%20Lunch.ics"
    assert put(db, people.alice, href, plain("lunch-uid")).created is True
    assert put(db, people.alice, href, plain("lunch-uid", "Dinner")).created is False
    listed = propfind(db, people.alice, calendar(ALICE), 1, d("getetag"))
    assert list(listed) == [calendar(ALICE), obj(ALICE, "My Lunch.ics")]
    assert obj(ALICE, "My Lunch.ics") == href
    assert "SUMMARY:Dinner" in get(db, people.alice, href).text


CURRENT = "{current}"  # stands for the resource's tag at the time of the request


@pytest.mark.parametrize(("exists", "conditions"), [
    (True, Conditions(if_match='"stale"')),
    (False, Conditions(if_match="*")),
    (True, Conditions(if_none_match="*")),
    (True, Conditions(if_none_match=CURRENT)),
    (True, Conditions(if_schedule_tag_match='"stale"')),
    (False, Conditions(if_schedule_tag_match='"stale"')),
], ids=["if-match-stale", "if-match-any-missing", "if-none-match-any", "if-none-match-current",
        "schedule-tag-stale", "schedule-tag-missing"])
def test_a_failed_condition_is_a_412_that_changes_nothing(db: Database, people: People, exists: bool,
                                                         conditions: Conditions) -> None:
    href = obj(ALICE, "review.ics")
    if exists:
        put(db, people.alice, href, meeting("review", BOB))
        etag = get(db, people.alice, href).etag
        conditions = Conditions(*(f'"{etag}"' if v == CURRENT else v for v in (
            conditions.if_match, conditions.if_none_match, conditions.if_schedule_tag_match)))
    before = copy_of(db, people.alice, "review")
    assert refused_put(db, people.alice, href, meeting("review", BOB, summary="Moved"), conditions).status == 412
    after = copy_of(db, people.alice, "review")
    assert (after.to_ical() if after else None) == (before.to_ical() if before else None)


def test_conditions_that_hold_let_the_put_through(db: Database, people: People) -> None:
    href = obj(ALICE, "review.ics")
    assert put(db, people.alice, href, meeting("review", BOB), Conditions(if_none_match="*")).created
    current = get(db, people.alice, href)
    assert current.schedule_tag
    written = put(db, people.alice, href, meeting("review", BOB, summary="Moved"),
                  Conditions(if_match=f'"{current.etag}"', if_schedule_tag_match=f'"{current.schedule_tag}"'))
    assert written.created is False
    assert "SUMMARY:Moved" in get(db, people.alice, href).text


@pytest.mark.parametrize(("second", "text", "condition"), [
    (obj(ALICE, "b.ics"), plain("uid-a"), "no-uid-conflict"),
    (obj(ALICE, "b.ics", "work"), plain("uid-a"), "no-uid-conflict"),
    (obj(ALICE, "b.ics"), meeting("uid-a", BOB), "unique-scheduling-object-resource"),
])
def test_a_uid_already_in_the_home_is_refused_naming_where_it_is(db: Database, people: People, second: str,
                                                                 text: str, condition: str) -> None:
    mkcalendar(db, people.alice, calendar(ALICE, "work"))
    first = obj(ALICE, "a.ics")
    put(db, people.alice, first, text)
    refused = refused_put(db, people.alice, second, text)
    assert (refused.status, refused.condition, refused.href) == (403, c(condition), first)
    assert refusal(db, people.alice, second, tree.get_resource).status == 404


def test_a_put_that_changes_the_uid_of_a_resource_is_refused(db: Database, people: People) -> None:
    href = obj(ALICE, "a.ics")
    put(db, people.alice, href, plain("uid-a"))
    refused = refused_put(db, people.alice, href, plain("uid-b"))
    assert (refused.status, refused.condition, refused.href) == (403, c("no-uid-conflict"), href)
    assert "UID:uid-a" in get(db, people.alice, href).text


def test_a_calendar_made_for_tasks_refuses_events_and_takes_tasks(db: Database, people: People) -> None:
    tasks = calendar(ALICE, "tasks")
    mkcalendar(db, people.alice, tasks, '<D:displayname>Tasks</D:displayname><C:supported-calendar-component-set>'
                                        '<C:comp name="VTODO"/></C:supported-calendar-component-set>')
    supported = prop(db, people.alice, tasks, c("supported-calendar-component-set"))
    assert [comp.get("name") for comp in supported.found[c("supported-calendar-component-set")]] == ["VTODO"]
    refused = refused_put(db, people.alice, obj(ALICE, "lunch.ics", "tasks"), plain("lunch"))
    assert (refused.status, refused.condition) == (403, c("supported-calendar-component"))
    assert copy_of(db, people.alice, "lunch") is None
    assert put(db, people.alice, obj(ALICE, "report.ics", "tasks"), TASK.format(uid="report")).created


@pytest.mark.parametrize(("body", "condition"), [
    (plain("huge", "x" * 1_100_000), "max-resource-size"),
    ("BEGIN:VCALENDAR\nthis is not iCalendar", "valid-calendar-data"),
    (b"\xff\xfe not UTF-8", "valid-calendar-data"),
    (plain("bad-date", start="not-a-date"), "valid-calendar-data"),
    (plain("one").replace("END:VCALENDAR", plain("two").split("PRODID:-//Test//Test//EN\r\n")[1]),
     "valid-calendar-object-resource"),
], ids=["too-large", "not-icalendar", "not-utf-8", "invalid-value", "two-uids"])
def test_an_object_that_cannot_be_stored_is_refused_and_nothing_changes(db: Database, people: People,
                                                                        body: str | bytes, condition: str) -> None:
    token = prop(db, people.alice, calendar(ALICE), d("sync-token")).text(d("sync-token"))
    refused = refused_put(db, people.alice, obj(ALICE, "bad.ics"), body)
    assert (refused.status, refused.condition) == (403, c(condition))
    assert list(propfind(db, people.alice, calendar(ALICE), 1, d("getetag"))) == [calendar(ALICE)]
    assert prop(db, people.alice, calendar(ALICE), d("sync-token")).text(d("sync-token")) == token


def test_a_body_of_two_icalendar_objects_is_refused(db: Database, people: People) -> None:
    refused = refused_put(db, people.alice, obj(ALICE, "two.ics"), plain("one") + plain("two"))
    assert refused.status == 403
    assert refused.condition in (c("valid-calendar-data"), c("valid-calendar-object-resource"))


def test_a_put_into_a_calendar_that_does_not_exist_is_a_conflict(db: Database, people: People) -> None:
    assert refused_put(db, people.alice, obj(ALICE, "x.ics", "nowhere"), plain("x")).status == 409


# --- an attendee's changes --------------------------------------------------------------------


def test_an_attendee_changing_only_its_answer_replies_to_the_local_organizer(db: Database, people: People) -> None:
    bobs = invite_bob(db, people)
    mine = get(db, people.bob, bobs)
    written = put(db, people.bob, bobs, answered(mine.text, BOB, "ACCEPTED"),
                  Conditions(if_schedule_tag_match=f'"{mine.schedule_tag}"'))
    assert written.created is False
    assert partstat(copy_of(db, people.bob, "review"), BOB) == "ACCEPTED"
    assert partstat(copy_of(db, people.alice, "review"), BOB) == "ACCEPTED"
    with db.transaction() as session:
        (last,) = inbox.list_entries(session, people.alice.id)[-1:]
    assert (last.method, last.sender, last.uid) == ("REPLY", BOB, "review")


def test_an_attendee_changing_the_summary_is_refused_and_nobody_sees_it(db: Database, people: People) -> None:
    bobs = invite_bob(db, people)
    mine = get(db, people.bob, bobs).text
    refused = refused_put(db, people.bob, bobs, mine.replace("SUMMARY:Design review", "SUMMARY:Mine now"))
    assert (refused.status, refused.condition) == (403, c("allowed-attendee-scheduling-object-change"))
    for principal in (people.alice, people.bob):
        component = component_of(db, principal, "review")
        assert str(component["SUMMARY"]) == "Design review"


def test_the_organizers_schedule_tag_stays_through_a_reply_and_moves_with_the_event(db: Database,
                                                                                  people: People) -> None:
    alices = obj(ALICE, "review-alice.ics")
    bobs = invite_bob(db, people)
    first = get(db, people.alice, alices)
    put(db, people.bob, bobs, answered(get(db, people.bob, bobs).text, BOB, "ACCEPTED"))
    replied = get(db, people.alice, alices)
    assert replied.schedule_tag == first.schedule_tag
    assert replied.etag != first.etag
    moved_text = replied.text.replace("20260710T100000Z", "20260711T100000Z").replace("20260710T110000Z",
                                                                                      "20260711T110000Z")
    written = put(db, people.alice, alices, moved_text,
                  Conditions(if_schedule_tag_match=f'"{replied.schedule_tag}"'))
    moved = get(db, people.alice, alices)
    assert moved.schedule_tag != replied.schedule_tag and written.schedule_tag == moved.schedule_tag
    assert moved.etag != replied.etag


# --- DELETE ---------------------------------------------------------------------------------


def test_the_organizer_deleting_a_meeting_cancels_the_local_attendees_copy(db: Database, people: People) -> None:
    invite_bob(db, people)
    delete(db, people.alice, obj(ALICE, "review-alice.ics"))
    assert copy_of(db, people.alice, "review") is None
    component = component_of(db, people.bob, "review")
    assert str(component["STATUS"]) == "CANCELLED"


@pytest.mark.parametrize(("schedule_reply", "organizer_sees"), [(True, "DECLINED"), (False, "NEEDS-ACTION")])
def test_an_attendee_deleting_a_meeting_declines_unless_told_not_to_reply(db: Database, people: People,
                                                                          schedule_reply: bool,
                                                                          organizer_sees: str) -> None:
    bobs = invite_bob(db, people)
    delete(db, people.bob, bobs, schedule_reply=schedule_reply)
    assert copy_of(db, people.bob, "review") is None
    assert refusal(db, people.bob, bobs, tree.get_resource).status == 404
    assert partstat(copy_of(db, people.alice, "review"), BOB) == organizer_sees


def test_a_delete_with_a_stale_etag_or_of_nothing_is_refused(db: Database, people: People) -> None:
    href = obj(ALICE, "a.ics")
    put(db, people.alice, href, plain("a"))
    stale = refusal(db, people.alice, href, lambda s, r: writes.delete(s, r, Conditions(if_match='"stale"')))
    assert stale.status == 412 and "UID:a" in get(db, people.alice, href).text
    missing = refusal(db, people.alice, obj(ALICE, "b.ics"), lambda s, r: writes.delete(s, r, Conditions()))
    assert missing.status == 404


# --- calendars ------------------------------------------------------------------------------


def test_making_a_calendar_where_one_exists_is_refused(db: Database, people: People) -> None:
    mkcalendar(db, people.alice, calendar(ALICE, "work"))
    for existing in ("work", "default"):
        with pytest.raises(DavError) as refused:
            mkcalendar(db, people.alice, calendar(ALICE, existing))
        assert (refused.value.status, refused.value.condition) == (405, d("resource-must-be-null"))
    with pytest.raises(DavError) as reserved:
        mkcalendar(db, people.alice, calendar(ALICE, "inbox"))
    assert reserved.value.status == 403
    assert list(propfind(db, people.alice, home(ALICE), 1, d("resourcetype"))) == [
        home(ALICE), calendar(ALICE), calendar(ALICE, "work"), calendar(ALICE, "inbox"), calendar(ALICE, "outbox")]


def test_the_default_calendar_cannot_be_deleted(db: Database, people: People) -> None:
    put(db, people.alice, obj(ALICE, "a.ics"), plain("a"))
    refused = refusal(db, people.alice, calendar(ALICE), lambda s, r: writes.delete(s, r, Conditions()))
    assert (refused.status, refused.condition) == (403, c("default-calendar-needed"))
    assert "UID:a" in get(db, people.alice, obj(ALICE, "a.ics")).text


def test_deleting_a_calendar_cancels_its_meetings_for_their_attendees(db: Database, people: People) -> None:
    mkcalendar(db, people.alice, calendar(ALICE, "work"))
    invite_bob(db, people, href=obj(ALICE, "review.ics", "work"))
    put(db, people.alice, obj(ALICE, "lunch.ics", "work"), plain("lunch"))
    delete(db, people.alice, calendar(ALICE, "work"))
    component = component_of(db, people.bob, "review")
    assert str(component["STATUS"]) == "CANCELLED"
    assert copy_of(db, people.alice, "review") is None and copy_of(db, people.alice, "lunch") is None
    with db.transaction() as session:
        assert [cal.name for cal in collections.calendars_of(session, people.alice.id)] == ["default"]
    assert refused_put(db, people.alice, obj(ALICE, "again.ics", "work"), plain("again")).status == 409


def test_proppatch_sets_the_name_colour_and_order(db: Database, people: People) -> None:
    codes = proppatch(db, people.alice, calendar(ALICE), "<D:displayname>Work stuff</D:displayname>"
                      "<A:calendar-color>#FF8800FF</A:calendar-color><A:calendar-order>3</A:calendar-order>")
    assert codes == {d("displayname"): 200, apple("calendar-color"): 200, apple("calendar-order"): 200}
    shown = propfind(db, people.alice, calendar(ALICE), 0, d("displayname"), apple("calendar-color"),
                     apple("calendar-order"))[calendar(ALICE)]
    assert (shown.text(d("displayname")), shown.text(apple("calendar-color")),
            shown.text(apple("calendar-order"))) == ("Work stuff", "#FF8800FF", "3")


def test_proppatch_of_a_protected_property_changes_nothing(db: Database, people: People) -> None:
    token = prop(db, people.alice, calendar(ALICE), d("sync-token")).text(d("sync-token"))
    codes = proppatch(db, people.alice, calendar(ALICE),
                      '<D:displayname>Renamed</D:displayname><D:getetag>"x"</D:getetag>')
    assert codes == {d("getetag"): 403, d("displayname"): 424}
    assert prop(db, people.alice, calendar(ALICE), d("displayname")).text(d("displayname")) == "Calendar"
    assert prop(db, people.alice, calendar(ALICE), d("sync-token")).text(d("sync-token")) == token
