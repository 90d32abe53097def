"""`check-config`'s Hetzner checks: the token, the server type, the locations, the image.

A cheap authenticated `GET /server_types?name=…` proves the token (its RateLimit
headers show what is left of the hourly budget); the type's `prices` entries and
`locations[].available` say where it can be created, for each of `HCLOUD_LOCATIONS`;
`HCLOUD_IMAGE` must exist for the type's architecture and be available. The
project's server limit is not in the API, so `MAX_SERVERS` cannot be checked against
it; nor can a read-only token be told from a read & write one without writing.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from app.preflight_apis import Answer, Http, JsonDict, Row, Unreachable, again
from core.settings import Settings

HETZNER_CONSOLE_FIX = (
    "create an API token with Read & Write permission in the Hetzner Cloud Console "
    "(your project → Security → API tokens) and put it in HCLOUD_TOKEN"
)


def _hc_error(answer: Answer) -> str:
    code, message = answer.field("error", "code"), answer.field("error", "message")
    return f"{code}: {message}" if code else f"HTTP {answer.status}"


async def hetzner_rows(http: Http, settings: Settings) -> list[Row]:
    api, wanted = settings.hcloud_endpoint, settings.hcloud_server_type
    auth = {"Authorization": f"Bearer {settings.hcloud_token.get_secret_value()}"}
    try:
        found = await http.get(f"{api}/server_types", headers=auth, params={"name": wanted})
    except Unreachable as error:
        return [
            Row(
                False,
                f"Hetzner: cannot reach {api} ({error})",
                "check HCLOUD_ENDPOINT (https://api.hetzner.cloud/v1) and that this machine "
                "reaches it",
            )
        ]
    if found.status in (401, 403):
        return [Row(False, f"Hetzner: token rejected ({_hc_error(found)})", HETZNER_CONSOLE_FIX)]
    types = found.field("server_types")
    if found.status != 200 or not isinstance(types, list):
        return [
            Row(
                False,
                f"Hetzner: GET /server_types failed ({_hc_error(found)})",
                again("HCLOUD_ENDPOINT"),
            )
        ]
    left, limit = found.headers.get("RateLimit-Remaining"), found.headers.get("RateLimit-Limit")
    budget = f" ({left} of {limit} requests left this hour)" if left and limit else ""
    rows = [Row(True, f"Hetzner: token accepted{budget}")]
    server_type = next((t for t in types if t.get("name") == wanted), None)
    if server_type is None:
        rows.append(await _unknown_type_row(http, api, auth, wanted))
        return rows
    rows.append(_locations_row(server_type, settings.hcloud_locations))
    rows.append(await _image_row(http, api, auth, settings.hcloud_image, server_type))
    return rows


async def _unknown_type_row(http: Http, api: str, auth: dict[str, str], wanted: str) -> Row:
    names = ""
    try:
        every = await http.get(f"{api}/server_types", headers=auth, params={"per_page": "50"})
        names = ", ".join(str(t.get("name")) for t in every.field("server_types") or [])
    except Unreachable:
        pass
    return Row(
        False,
        f"HCLOUD_SERVER_TYPE {wanted}: Hetzner has no such server type",
        f"set HCLOUD_SERVER_TYPE to one of: {names}" if names else "correct HCLOUD_SERVER_TYPE",
    )


def _locations_row(server_type: JsonDict, locations: list[str]) -> Row:
    name = server_type.get("name")
    prices = {p.get("location"): p for p in server_type.get("prices") or []}
    offered = [
        loc.get("name")
        for loc in server_type.get("locations") or [{"name": n} for n in prices]
        if loc.get("available", True) and loc.get("name") in prices
    ]
    missing = [loc for loc in locations if loc not in offered]
    if missing:
        where = ", ".join(str(loc) for loc in offered) or "nowhere"
        return Row(
            False,
            f"HCLOUD_SERVER_TYPE {name} is not offered in {', '.join(missing)}",
            f"remove {', '.join(missing)} from HCLOUD_LOCATIONS ({name} is offered in {where}), "
            "or choose a HCLOUD_SERVER_TYPE offered there",
        )
    size = (
        f"{server_type.get('cores')} vCPU, {server_type.get('memory'):g} GB, "
        f"{server_type.get('architecture')}"
    )
    try:
        net = prices[locations[0]]["price_monthly"]["net"]
        price = f", €{Decimal(str(net)):.2f}/month net in {locations[0]}"
    except (KeyError, TypeError, InvalidOperation):
        price = ""
    return Row(True, f"HCLOUD_SERVER_TYPE {name} ({size}) offered in {', '.join(locations)}{price}")


async def _image_row(
    http: Http, api: str, auth: dict[str, str], image: str, server_type: JsonDict
) -> Row:
    arch = str(server_type.get("architecture"))
    fix = (
        "set HCLOUD_IMAGE to a system image such as ubuntu-24.04, or build a golden image "
        "with `openclaw-hosted image build` and use its id"
    )
    try:
        if image.isdigit():
            answer = await http.get(f"{api}/images/{image}", headers=auth)
            found = answer.field("image")
        else:
            params = {"name": image, "architecture": arch, "per_page": "1"}
            answer = await http.get(f"{api}/images", headers=auth, params=params)
            found = next(iter(answer.field("images") or []), None)
    except Unreachable as error:
        return Row(False, f"HCLOUD_IMAGE {image}: no answer ({error})", again("HCLOUD_ENDPOINT"))
    if answer.status not in (200, 404):
        return Row(
            False,
            f"HCLOUD_IMAGE {image}: lookup failed ({_hc_error(answer)})",
            again("HCLOUD_ENDPOINT"),
        )
    if not isinstance(found, dict):
        return Row(False, f"HCLOUD_IMAGE {image}: no such image for {arch} servers", fix)
    if found.get("architecture") != arch:
        return Row(
            False,
            f"HCLOUD_IMAGE {image}: built for {found.get('architecture')}, but "
            f"{server_type.get('name')} servers are {arch}",
            fix,
        )
    if found.get("status", "available") != "available":
        return Row(
            False,
            f"HCLOUD_IMAGE {image}: {found.get('status')}, not yet available",
            "wait for the snapshot to finish, then run check-config again",
        )
    return Row(True, f"HCLOUD_IMAGE {image}: {found.get('description') or found.get('name')}")
