"""The properties of each kind of CalDAV resource, as inner XML by Clark name (RFC 4918 §15, 4791 §5.2, 6638 §2, 5397, 6578).

Given what a principal and its collections are, these say what a PROPFIND sees; and
which calendar properties a client may set (``read_calendar_settings``), refusing
protected ones by name. Pure: the values come in, strings go out.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime
from xml.etree.ElementTree import Element

from gateway.core.addresses import as_uri
from gateway.core.dav import paths
from gateway.core.dav.responses import href, hrefs
from gateway.core.dav.xml import APPLE, CALDAV, CALSERVER, DAV, element, empty, escape, qname

MAX_RESOURCE_SIZE = 1024 * 1024
CALENDAR_KINDS = ("VEVENT", "VTODO", "VJOURNAL")
USER_TYPES = {"individual": "INDIVIDUAL", "room": "ROOM", "resource": "RESOURCE"}


def d(local: str) -> str:
    return qname(DAV, local)


def c(local: str) -> str:
    return qname(CALDAV, local)


@dataclass(frozen=True)
class PrincipalView:
    """A principal as its properties show it."""

    address: str
    aliases: tuple[str, ...] = ()
    display_name: str = ""
    kind: str = "individual"


@dataclass(frozen=True)
class CalendarView:
    """A calendar collection as its properties show it."""

    name: str
    display_name: str
    description: str
    color: str
    sort_order: int
    timezone: str
    transparent: bool
    components: tuple[str, ...]
    sync_token: str


def _privileges(names: Iterable[str]) -> str:
    return "".join(element(d("privilege"), empty(n)) for n in names)


_OWNER_PRIVILEGES = _privileges([d("read"), d("write"), d("write-properties"), d("write-content"), d("bind"),
                                 d("unbind"), d("read-current-user-privilege-set"), c("read-free-busy")])
_READ_PRIVILEGES = _privileges([d("read"), d("read-current-user-privilege-set")])
_OUTBOX_PRIVILEGES = _privileges([d("read"), c("schedule-send"), d("read-current-user-privilege-set")])
_INBOX_PRIVILEGES = _privileges([d("read"), d("unbind"), c("schedule-deliver"), d("read-current-user-privilege-set")])


def _reports(names: Iterable[str]) -> str:
    return "".join(element(d("supported-report"), element(d("report"), empty(n))) for n in names)


_CALENDAR_REPORTS = _reports([c("calendar-multiget"), c("calendar-query"), c("free-busy-query"), d("sync-collection")])
_HOME_REPORTS = _reports([d("sync-collection")])
_INBOX_REPORTS = _reports([c("calendar-multiget"), c("calendar-query")])


def common(principal: PrincipalView) -> dict[str, str]:
    """What every resource has: who is asking, and who owns it."""
    me = href(paths.principal_href(principal.address))
    return {d("current-user-principal"): me, d("owner"): me,
            d("principal-collection-set"): href(f"{paths.ROOT}principals/")}


def collection(resourcetype: str, privileges: str, display_name: str = "") -> dict[str, str]:
    values = {d("resourcetype"): empty(d("collection")) + resourcetype, d("current-user-privilege-set"): privileges}
    if display_name:
        values[d("displayname")] = escape(display_name)
    return values


def root_properties(principal: PrincipalView) -> dict[str, str]:
    return {**common(principal), **collection("", _READ_PRIVILEGES, "Reefknot")}


def principal_properties(principal: PrincipalView) -> dict[str, str]:
    """The principal resource (RFC 3744 §4, 4791 §6.2, 6638 §2.4.1)."""
    address = principal.address
    home = paths.home_href(address)
    uris = [as_uri(address), *(as_uri(a) for a in principal.aliases), paths.principal_href(address)]
    return {
        **common(principal),
        **collection(empty(d("principal")), _READ_PRIVILEGES, principal.display_name or address),
        d("principal-URL"): href(paths.principal_href(address)),
        c("calendar-home-set"): href(home),
        c("calendar-user-address-set"): hrefs(uris),
        c("calendar-user-type"): USER_TYPES.get(principal.kind, "INDIVIDUAL"),
        c("schedule-inbox-URL"): href(f"{home}{paths.INBOX}/"),
        c("schedule-outbox-URL"): href(f"{home}{paths.OUTBOX}/"),
        qname(CALSERVER, "email-address-set"): element(qname(CALSERVER, "email-address"), escape(address)),
        d("supported-report-set"): "",
    }


def home_properties(principal: PrincipalView, sync_token: str, default_calendar: str) -> dict[str, str]:
    return {
        **common(principal), **collection("", _OWNER_PRIVILEGES, principal.display_name or principal.address),
        d("supported-report-set"): _HOME_REPORTS, d("sync-token"): escape(sync_token),
        c("schedule-default-calendar-URL"): href(paths.calendar_href(principal.address, default_calendar)),
        c("calendar-home-set"): href(paths.home_href(principal.address)),
    }


def calendar_properties(principal: PrincipalView, calendar: CalendarView, default_calendar: str) -> dict[str, str]:
    """A calendar collection (RFC 4791 §5.2, 6578 §4, Apple's colour and order, CalendarServer's ctag)."""
    values = {
        **common(principal),
        **collection(empty(c("calendar")), _OWNER_PRIVILEGES, calendar.display_name or calendar.name),
        c("calendar-description"): escape(calendar.description),
        c("supported-calendar-component-set"): "".join(f'<C:comp name="{n}"/>' for n in calendar.components),
        c("supported-calendar-data"): '<C:calendar-data content-type="text/calendar" version="2.0"/>',
        c("max-resource-size"): str(MAX_RESOURCE_SIZE),
        c("schedule-calendar-transp"): empty(c("transparent") if calendar.transparent else c("opaque")),
        c("schedule-default-calendar-URL"): href(paths.calendar_href(principal.address, default_calendar)),
        d("supported-report-set"): _CALENDAR_REPORTS,
        d("sync-token"): escape(calendar.sync_token),
        qname(CALSERVER, "getctag"): escape(calendar.sync_token),
        qname(APPLE, "calendar-order"): str(calendar.sort_order),
    }
    if calendar.color:
        values[qname(APPLE, "calendar-color")] = escape(calendar.color)
    if calendar.timezone:
        values[c("calendar-timezone")] = escape(calendar.timezone)
    return values


def inbox_properties(principal: PrincipalView, ctag: str, default_calendar: str = "default") -> dict[str, str]:
    """The scheduling inbox (RFC 6638 §2.2), which names where invitations go (§9.2)."""
    return {**common(principal), **collection(empty(c("schedule-inbox")), _INBOX_PRIVILEGES, "Inbox"),
            c("schedule-default-calendar-URL"): href(paths.calendar_href(principal.address, default_calendar)),
            d("supported-report-set"): _INBOX_REPORTS, qname(CALSERVER, "getctag"): escape(ctag),
            c("supported-calendar-component-set"): "".join(f'<C:comp name="{n}"/>' for n in CALENDAR_KINDS)}


def outbox_properties(principal: PrincipalView) -> dict[str, str]:
    return {**common(principal), **collection(empty(c("schedule-outbox")), _OUTBOX_PRIVILEGES, "Outbox")}


def object_properties(base: dict[str, str], etag: str, updated_at: datetime, schedule_tag: str = "",
                      *, content_type: str = "text/calendar; charset=utf-8", dated: bool = True) -> dict[str, str]:
    """A calendar object resource, on top of ``base`` (``object_base``); ``calendar-data`` is added by whoever renders it.

    ``dated`` False leaves out ``getlastmodified`` (a request that does not want it need not pay for it).
    """
    values = dict(base)
    values[_GETETAG] = f"&quot;{escape(etag)}&quot;"
    if dated:
        values[_LASTMODIFIED] = format_datetime(updated_at, usegmt=True)
    values[_CONTENT_TYPE] = content_type
    if schedule_tag:
        values[_SCHEDULE_TAG] = f"&quot;{escape(schedule_tag)}&quot;"
    return values


def object_base(principal: PrincipalView) -> dict[str, str]:
    """What every object of a principal has in common, worked out once per request."""
    return {**common(principal), d("resourcetype"): "", d("current-user-privilege-set"): _OWNER_PRIVILEGES}


_GETETAG, _LASTMODIFIED, _CONTENT_TYPE = d("getetag"), d("getlastmodified"), d("getcontenttype")
LAST_MODIFIED = _LASTMODIFIED
_SCHEDULE_TAG = c("schedule-tag")


# --- what a client may set on a calendar -----------------------------------------------------

@dataclass(frozen=True)
class CalendarSettings:
    """The calendar properties a PROPPATCH or MKCALENDAR sets (None: left as they are) and those refused."""

    values: tuple[tuple[str, object], ...] = ()
    refused: tuple[str, ...] = ()
    accepted: tuple[str, ...] = ()


def read_calendar_settings(sets: Iterable[tuple[str, Element]], removes: Iterable[str] = (),
                           *, creating: bool = False) -> CalendarSettings:
    """Store columns for the settable properties; anything else is refused (``cannot-modify-protected-property``)."""
    values: list[tuple[str, object]] = []
    refused: list[str] = []
    accepted: list[str] = []
    for name, value in sets:
        column = _setting(name, value, creating)
        if column is None:
            refused.append(name)
        else:
            values.append(column)
            accepted.append(name)
    for name in removes:
        if name in _CLEARED:
            values.append((_CLEARED[name], ""))
            accepted.append(name)
        else:
            refused.append(name)
    return CalendarSettings(tuple(values), tuple(refused), tuple(accepted))


_CLEARED = {d("displayname"): "display_name", c("calendar-description"): "description",
            qname(APPLE, "calendar-color"): "color", c("calendar-timezone"): "timezone"}


def _setting(name: str, value: Element, creating: bool) -> tuple[str, object] | None:
    text = (value.text or "").strip()
    if name in _CLEARED:
        return _CLEARED[name], text[:200] if name != c("calendar-timezone") else text
    if name == qname(APPLE, "calendar-order"):
        return ("sort_order", int(text)) if text.lstrip("-").isdigit() else None
    if name == c("schedule-calendar-transp"):
        return "transparent", value.find(c("transparent")) is not None
    if name == c("supported-calendar-component-set") and creating:
        kinds = tuple(k for k in ((comp.get("name") or "").upper() for comp in value) if k in CALENDAR_KINDS)
        return ("components", ",".join(kinds)) if kinds else None
    return None
