"""The local EWS server refuses what Exchange refuses, so the connector's tests mean
something: no credentials, no RequestServerVersion, impersonation without the role,
calendar items without SendMeetingInvitations."""

from __future__ import annotations

from pathlib import Path

import requests

from tests.exchange.server import EwsServer

ENVELOPE = """<?xml version="1.0" encoding="utf-8"?>
<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"
  xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages"
  xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types">
<s:Header>{header}</s:Header><s:Body>{body}</s:Body></s:Envelope>"""
VERSION = '<t:RequestServerVersion Version="Exchange2016"/>'
IMPERSONATE = (
    "<t:ExchangeImpersonation><t:ConnectingSID><t:PrimarySmtpAddress>{}"
    "</t:PrimarySmtpAddress></t:ConnectingSID></t:ExchangeImpersonation>"
)
CREATE = (
    '<m:CreateItem{attr}><m:SavedItemFolderId><t:DistinguishedFolderId Id="calendar"/>'
    "</m:SavedItemFolderId><m:Items><t:CalendarItem><t:Subject>x</t:Subject>"
    "<t:Start>2026-12-01T10:00:00Z</t:Start><t:End>2026-12-01T11:00:00Z</t:End>"
    "</t:CalendarItem></m:Items></m:CreateItem>"
)


def post(
    server: EwsServer, ca: Path, header: str, body: str, auth: bool = True
) -> requests.Response:
    with requests.Session() as s:
        s.trust_env = False
        return s.post(
            server.url,
            data=ENVELOPE.format(header=header, body=body).encode(),
            headers={"Content-Type": "text/xml; charset=utf-8"},
            auth=(server.username, server.password) if auth else None,
            verify=str(ca),
            timeout=10,
        )


def test_requests_without_credentials_get_401(server: EwsServer, ca: Path) -> None:
    r = post(server, ca, VERSION, CREATE.format(attr=""), auth=False)
    assert r.status_code == 401 and "Basic" in r.headers["WWW-Authenticate"]


def test_a_missing_request_server_version_is_a_fault(server: EwsServer, ca: Path) -> None:
    r = post(server, ca, "", CREATE.format(attr=' SendMeetingInvitations="SendToNone"'))
    assert r.status_code == 500 and b"ErrorSchemaValidation" in r.content


def test_impersonation_needs_the_role(server: EwsServer, ca: Path, staff: list) -> None:
    header = VERSION + IMPERSONATE.format(staff[0].email)
    assert (
        b"NoError"
        in post(
            server, ca, header, CREATE.format(attr=' SendMeetingInvitations="SendToNone"')
        ).content
    )
    server.impersonation = False
    r = post(server, ca, header, CREATE.format(attr=' SendMeetingInvitations="SendToNone"'))
    assert r.status_code == 500 and b"ErrorImpersonateUserDenied" in r.content


def test_someone_elses_calendar_needs_impersonation_or_delegation(
    server: EwsServer, ca: Path, staff: list
) -> None:
    body = CREATE.format(attr=' SendMeetingInvitations="SendToNone"').replace(
        '<t:DistinguishedFolderId Id="calendar"/>',
        f'<t:DistinguishedFolderId Id="calendar"><t:Mailbox><t:EmailAddress>{staff[0].email}'
        "</t:EmailAddress></t:Mailbox></t:DistinguishedFolderId>",
    )
    assert b"ErrorAccessDenied" in post(server, ca, VERSION, body).content


def test_calendar_items_need_send_meeting_invitations(
    server: EwsServer, ca: Path, staff: list
) -> None:
    header = VERSION + IMPERSONATE.format(staff[0].email)
    r = post(server, ca, header, CREATE.format(attr=""))
    assert r.status_code == 200 and b"ErrorSendMeetingInvitationsRequired" in r.content
    assert server.items_of(staff[0].email) == []
