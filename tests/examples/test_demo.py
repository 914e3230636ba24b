"""The demo's experiments (examples/_demo.py), in-process: each one's counts are the provider's own records,
and the journal's totals agree with the provider's. The browser test runs the same from the page."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import httpx
import pytest

from asgi_oauth_guard.testing import FakeClock, OAuthTestProvider
from examples._timeline import Mark, Span, timeline_svg

from .conftest import APP, EXAMPLES
from .test_examples import sign_in

ON_STARLETTE = pytest.mark.parametrize(("example", "anyio_backend"), [("starlette", "asyncio")])
# The experiments are routes in front of the guard, the same for every framework: run them on each.
ON_EACH = pytest.mark.parametrize(("example", "anyio_backend"), [(name, "asyncio") for name in EXAMPLES])


async def run(client: httpx.AsyncClient, name: str, **options: Any) -> dict[str, Any]:
    answer = await client.post(f"/demo/try/{name}", json=options, headers={"origin": APP})
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    assert result["ok"], result
    assert result["naive"] and result["did"] and result["timeline"].startswith("<svg")
    ET.fromstring(result["timeline"])  # well-formed
    return result


@pytest.mark.anyio
@ON_EACH
async def test_each_experiment_counts_what_the_provider_recorded(
    client: httpx.AsyncClient, provider: OAuthTestProvider, clock: FakeClock
) -> None:
    await sign_in(client)

    dup = await run(client, "duplicate-callbacks")
    assert dup["answers"] == [303] * 5
    assert dup["guard_delta"]["exchanges"] == dup["provider_delta"]["exchanges"] == 1
    assert dup["guard_delta"]["duplicates"] == 4
    assert (await client.get("/api/me", headers={"accept": "application/json"})).status_code == 200

    stampede = await run(client, "stampede")
    assert stampede["answers"] == [200] * 50
    assert stampede["guard_delta"]["refreshes"] == stampede["provider_delta"]["refreshes"] == 1
    assert stampede["guard_delta"]["shared"] == 49
    assert stampede["provider_delta"]["invalid_grant"] == 0

    revoke = await run(client, "revoke")
    assert revoke["answers"] == [401]
    assert revoke["guard_delta"]["refresh_failures"] == revoke["provider_delta"]["invalid_grant"] == 1
    assert revoke["guard_delta"]["relogins"] == 1

    await sign_in(client)
    out = await run(client, "sign-out-elsewhere")
    assert out["answers"] == [303, 401]
    assert out["guard_delta"]["sign_outs"] == out["provider_delta"]["revocations"] == 1

    await sign_in(client)
    down = await run(client, "provider-down", seconds=5)
    assert down["answers"] == [200, 503]
    assert provider.down
    clock.advance(5)
    events = (await client.get("/demo/events")).json()
    assert not provider.down and not events["provider_down"]
    me = await client.get("/api/me", headers={"accept": "application/json"})
    assert me.status_code == 200 and me.json()["refreshes"] == 1  # the session lived through it

    events = (await client.get("/demo/events?after=0")).json()
    guard, seen = events["guard"], events["provider"]
    assert (
        guard["exchanges"]
        == seen["exchanges"]
        == provider.count(endpoint="token", grant_type="authorization_code")
    )
    assert guard["sign_outs"] == seen["revocations"] == 1
    assert len(events["events"]) == events["next"]


@pytest.mark.anyio
@ON_STARLETTE
async def test_an_experiment_from_another_origin_is_refused(client: httpx.AsyncClient) -> None:
    answer = await client.post("/demo/try/revoke", json={}, headers={"origin": "http://evil.test"})
    assert answer.status_code == 403
    assert (await client.post("/demo/try/nothing", headers={"origin": APP})).status_code == 404


def test_the_timeline_has_a_row_per_lane_and_a_mark_per_event() -> None:
    svg = timeline_svg(
        "race",
        spans=[
            Span(lane="tab 1", start=0.0, end=0.3, status=303),
            Span(lane="tab 2", start=0.01, end=0.3, status=303),
        ],
        marks=[
            Mark(at=0.3, lane="tab 1", kind="login"),
            Mark(at=0.3, lane="tab 2", kind="duplicate_absorbed"),
        ],
        provider=[Mark(at=0.0, lane="provider", kind="authorization_code")],
        started=0.0,
    )
    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    assert len(root.findall(f"{ns}circle")) == 3 + 3  # three marks, three legend entries
    labels = [t.text for t in root.findall(f"{ns}text")]
    assert {"provider", "tab 1", "tab 2", "race"} <= set(labels)
