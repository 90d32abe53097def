"""Static Hetzner Cloud catalog: locations, server types with prices, system images.

The values mirror the real catalog closely enough for the product's choices (CAX
ARM types exist in the EU locations only; prices are per location and read from
`GET /server_types` rather than hard-coded by the product).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

VAT = Decimal("1.19")  # gross prices in the real API carry German VAT
CATALOG_CREATED = "2024-01-01T00:00:00+00:00"


@dataclass(frozen=True)
class Location:
    id: int
    name: str
    description: str
    country: str
    city: str
    latitude: float
    longitude: float
    network_zone: str
    datacenter: str

    def to_api(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "country": self.country,
            "city": self.city,
            "latitude": self.latitude,
            "longitude": self.longitude,
            "network_zone": self.network_zone,
        }


# fmt: off
LOCATIONS: tuple[Location, ...] = (
    Location(1, "fsn1", "Falkenstein DC Park 1", "DE", "Falkenstein", 50.47612, 12.370071,
             "eu-central", "fsn1-dc14"),
    Location(2, "nbg1", "Nuremberg DC Park 1", "DE", "Nuremberg", 49.452102, 11.076665,
             "eu-central", "nbg1-dc3"),
    Location(3, "hel1", "Helsinki DC Park 1", "FI", "Helsinki", 60.169855, 24.938379,
             "eu-central", "hel1-dc2"),
    Location(4, "ash", "Ashburn, VA", "US", "Ashburn, VA", 39.045821, -77.487073,
             "us-east", "ash-dc1"),
    Location(5, "hil", "Hillsboro, OR", "US", "Hillsboro, OR", 45.54222, -122.95194,
             "us-west", "hil-dc1"),
)
# fmt: on
EU = ("fsn1", "nbg1", "hel1")
ALL_LOCATIONS = tuple(loc.name for loc in LOCATIONS)


@dataclass(frozen=True)
class ServerType:
    id: int
    name: str
    description: str
    cores: int
    memory: float
    disk: int
    architecture: str
    category: str
    monthly_net: Decimal
    locations: tuple[str, ...]
    cpu_type: str = "shared"
    included_traffic: int = 20 * 1024**4
    recommended_in: tuple[str, ...] = field(default=EU)

    def _price(self, amount: Decimal) -> dict[str, str]:
        return {"net": f"{amount:.10f}", "gross": f"{amount * VAT:.16f}"}

    def to_api(self) -> dict[str, Any]:
        hourly = (self.monthly_net / Decimal(730)).quantize(Decimal("0.0001"))
        by_name = {loc.name: loc for loc in LOCATIONS}
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "category": self.category,
            "cores": self.cores,
            "memory": self.memory,
            "disk": self.disk,
            "storage_type": "local",
            "cpu_type": self.cpu_type,
            "architecture": self.architecture,
            "deprecated": False,
            "deprecation": None,
            "included_traffic": self.included_traffic,
            "prices": [
                {
                    "location": name,
                    "price_hourly": self._price(hourly),
                    "price_monthly": self._price(self.monthly_net),
                    "included_traffic": self.included_traffic,
                    "price_per_tb_traffic": self._price(Decimal("1.0000")),
                }
                for name in self.locations
            ],
            # hcloud 2.27 builds ServerTypeLocation(available=, recommended=) from
            # these entries and raises TypeError when either key is missing.
            "locations": [
                {
                    "id": by_name[name].id,
                    "name": name,
                    "deprecation": None,
                    "available": True,
                    "recommended": name in self.recommended_in,
                }
                for name in self.locations
            ],
        }


# fmt: off
SERVER_TYPES: tuple[ServerType, ...] = (
    ServerType(1, "cx23", "CX23", 2, 4.0, 40, "x86", "Cost-Optimized", Decimal("3.4900"), EU),
    ServerType(2, "cpx11", "CPX11", 2, 2.0, 40, "x86", "Regular Purpose", Decimal("4.9900"),
               ALL_LOCATIONS, recommended_in=ALL_LOCATIONS),
    ServerType(3, "cpx21", "CPX21", 3, 4.0, 80, "x86", "Regular Purpose", Decimal("8.9900"),
               ALL_LOCATIONS, recommended_in=ALL_LOCATIONS),
    # Ampere ARM types exist in the EU only, as in the real catalog.
    ServerType(45, "cax11", "CAX11", 2, 4.0, 40, "arm", "Cost-Optimized", Decimal("4.4900"), EU),
    ServerType(93, "cax21", "CAX21", 4, 8.0, 80, "arm", "Cost-Optimized", Decimal("7.9900"), EU),
    ServerType(94, "cax31", "CAX31", 8, 16.0, 160, "arm", "Cost-Optimized", Decimal("15.9900"),
               EU),
    ServerType(95, "cax41", "CAX41", 16, 32.0, 320, "arm", "Cost-Optimized", Decimal("31.4900"),
               EU),
)
# fmt: on


@dataclass(frozen=True)
class SystemImage:
    id: int
    name: str
    description: str
    os_flavor: str
    os_version: str
    architecture: str


# Real system images share a name across architectures and differ by id; the API
# picks the one that matches the server type's architecture when given a name.
SYSTEM_IMAGES: tuple[SystemImage, ...] = (
    SystemImage(161547269, "ubuntu-24.04", "Ubuntu 24.04", "ubuntu", "24.04", "x86"),
    SystemImage(161547270, "ubuntu-24.04", "Ubuntu 24.04", "ubuntu", "24.04", "arm"),
    SystemImage(67794396, "ubuntu-22.04", "Ubuntu 22.04", "ubuntu", "22.04", "x86"),
    SystemImage(103908070, "ubuntu-22.04", "Ubuntu 22.04", "ubuntu", "22.04", "arm"),
    SystemImage(114690387, "debian-12", "Debian 12", "debian", "12", "x86"),
    SystemImage(114690389, "debian-12", "Debian 12", "debian", "12", "arm"),
)


def find_location(ref: Any) -> Location | None:
    for loc in LOCATIONS:
        if ref in (loc.id, loc.name, str(loc.id)):
            return loc
    return None


def find_server_type(ref: Any) -> ServerType | None:
    for st in SERVER_TYPES:
        if ref in (st.id, st.name, str(st.id)):
            return st
    return None
