"""What a reverse proxy in front of Synapse routes where: the route categories (in the order a
proxy tries them, first match wins), how each balances, what listener resource serves it, and
the endpoint tables for what the installed Synapse cannot enumerate itself.

The patterns of most categories come from the installed Synapse (units/route_source.py runs
generate_workers_map's functions); `TABLE_V166` is the fallback for a Synapse without them
(before 1.81), and `DOCS_TABLE` the endpoints that script never lists (media, SSO, the admin
API, device lists), both copied from Synapse's workers documentation."""

from __future__ import annotations

from dataclasses import dataclass

ANY = "*"  # a pattern for every method (else the one method it names, e.g. GET)


@dataclass(frozen=True)
class Category:
    name: str  # the key in a routes file
    balance: str  # "roundrobin" | "user" (from the access token) | "room" | "source" | "single"
    resource: str  # the listener resource a process needs to serve it
    stream: str = ""  # routed to this stream's writers (from stream_writers), not by the routes file
    synapse: tuple[str, ...] = ()  # Synapse's CATEGORY names (generate_workers_map's headings)


CATEGORIES = (
    Category("typing", "roundrobin", "client", "typing", ("The typing stream",)),
    Category("to_device", "roundrobin", "client", "to_device", ("The to_device stream",)),
    Category("account_data", "roundrobin", "client", "account_data", ("Account data requests",)),
    Category("receipts", "roundrobin", "client", "receipts", ("Receipts requests",)),
    Category("presence", "roundrobin", "client", "presence", ("Presence requests",)),
    Category("push_rules", "roundrobin", "client", "push_rules", ("Push rule requests",)),
    Category("device_lists", "roundrobin", "client", "device_lists"),
    Category("thread_subscriptions", "roundrobin", "client", "thread_subscriptions",
             ("Thread Subscriptions requests (unstable)",)),
    Category("quarantined_media_changes", "roundrobin", "client", "quarantined_media_changes"),
    Category("media", "roundrobin", "media"),
    Category("pagination", "room", "client", synapse=("Client API requests (ALL FOR SAME ROOM MUST GO TO SAME WORKER)",)),
    Category("sync", "user", "client", synapse=("Sync requests",)),
    Category("event_sending", "room", "client", synapse=("Event sending requests",)),
    Category("federation_inbound", "source", "federation", synapse=("Inbound federation transaction request",)),
    Category("federation", "roundrobin", "federation", synapse=("Federation requests", "Federation requests (unstable)")),
    Category("encryption", "roundrobin", "client", synapse=("Encryption requests",)),
    Category("registration", "roundrobin", "client", synapse=("Registration/login requests",)),
    Category("user_directory", "roundrobin", "client", synapse=("User directory search requests",)),
    Category("sso", "single", "client", synapse=("SSO requests needed for all SSO providers",)),
    Category("delayed_events", "roundrobin", "client", synapse=("Delayed event management requests",)),
    Category("client", "roundrobin", "client", synapse=("Client API requests",)),
)
BY_NAME = {c.name: c for c in CATEGORIES}
BY_SYNAPSE_NAME = {s: c.name for c in CATEGORIES for s in c.synapse}
ASSIGNABLE = tuple(c.name for c in CATEGORIES if not c.stream)  # what a routes file may name
# without a routes file: what every worker with a client / federation listener takes
DEFAULT_CLIENT = ("sync", "client")
DEFAULT_FEDERATION = ("federation", "federation_inbound")

V = "(api/v1|r0|v3|unstable)"
R = "(r0|v3|unstable)"
C = "^/_matrix/client/"
F = "^/_matrix/federation/"

# Synapse's workers documentation of today, for what generate_workers_map does not list
DOCS_TABLE: dict[str, tuple[tuple[str, str], ...]] = {
    "device_lists": tuple((ANY, p) for p in (
        f"{C}(r0|v3)/delete_devices$", f"{C}{V}/devices(/|$)", f"{C}{R}/keys/upload",
        f"{C}{V}/keys/device_signing/upload$", f"{C}{V}/keys/signatures/upload$")),
    "quarantined_media_changes": ((ANY, "^/_synapse/admin/v1/quarantine_media/.*$"),),
    "media": tuple((ANY, p) for p in (
        "^/_matrix/media/", f"{C}v1/media/", f"{F}v1/media/", "^/_synapse/admin/v1/purge_media_cache$",
        "^/_synapse/admin/v1/room/.*/media.*$", "^/_synapse/admin/v1/user/.*/media.*$",
        "^/_synapse/admin/v1/media/.*$", "^/_synapse/admin/v1/users/.*/media$")),
    "sso": tuple((ANY, p) for p in (
        f"{C}{V}/login/sso/redirect", "^/_synapse/client/pick_idp$", "^/_synapse/client/pick_username",
        "^/_synapse/client/new_user_consent$", "^/_synapse/client/sso_register$",
        "^/_synapse/client/oidc/callback$", "^/_synapse/client/saml2/authn_response$", f"{C}{V}/login/cas/ticket$")),
}
DOCS_TABLE_SINCE = {"device_lists": (1, 135), "quarantined_media_changes": (1, 152)}  # the stream's first release

TABLE_VALID_FOR = "1.66"  # Synapse's workers documentation, v1.66 (valid up to 1.80)
TABLE_V166: dict[str, tuple[tuple[str, str], ...]] = {
    "sync": tuple((ANY, p) for p in (
        f"{C}(r0|v3)/sync$", f"{C}(api/v1|r0|v3)/events$", f"{C}(api/v1|r0|v3)/initialSync$",
        f"{C}(api/v1|r0|v3)/rooms/[^/]+/initialSync$")),
    "federation": tuple((ANY, p) for p in (
        f"{F}v1/event/", f"{F}v1/state/", f"{F}v1/state_ids/", f"{F}v1/backfill/", f"{F}v1/get_missing_events/",
        f"{F}v1/publicRooms", f"{F}v1/query/", f"{F}v1/make_join/", f"{F}v1/make_leave/",
        f"{F}(v1|v2)/send_join/", f"{F}(v1|v2)/send_leave/", f"{F}(v1|v2)/invite/", f"{F}v1/event_auth/",
        f"{F}v1/exchange_third_party_invite/", f"{F}v1/user/devices/", "^/_matrix/key/v2/query",
        f"{F}v1/hierarchy/")),
    "federation_inbound": ((ANY, f"{F}v1/send/"),),
    "client": tuple((ANY, p) for p in (
        f"{C}{V}/createRoom$", f"{C}{V}/publicRooms$", f"{C}{V}/rooms/.*/joined_members$",
        f"{C}{V}/rooms/.*/context/.*$", f"{C}{V}/rooms/.*/members$", f"{C}{V}/rooms/.*/state$",
        f"{C}v1/rooms/.*/hierarchy$", f"{C}unstable/org.matrix.msc2716/rooms/.*/batch_send$",
        f"{C}unstable/im.nheko.summary/rooms/.*/summary$", f"{C}{R}/account/3pid$", f"{C}{R}/account/whoami$",
        f"{C}{R}/devices$", f"{C}versions$", f"{C}{V}/voip/turnServer$", f"{C}{V}/rooms/.*/event/",
        f"{C}{V}/joined_rooms$", f"{C}{V}/search$")),
    "encryption": tuple((ANY, p) for p in (
        f"{C}{R}/keys/query$", f"{C}{R}/keys/changes$", f"{C}{R}/keys/claim$", f"{C}{R}/room_keys/")),
    "registration": tuple((ANY, p) for p in (
        f"{C}{V}/login$", f"{C}{R}/register$", f"{C}v1/register/m.login.registration_token/validity$")),
    "event_sending": tuple((ANY, p) for p in (
        f"{C}{V}/rooms/.*/redact", f"{C}{V}/rooms/.*/send", f"{C}{V}/rooms/.*/state/",
        f"{C}{V}/rooms/.*/(join|invite|leave|ban|unban|kick)$", f"{C}{V}/join/", f"{C}{V}/profile/")),
    "account_data": ((ANY, f"{C}{R}/.*/tags"), (ANY, f"{C}{R}/.*/account_data")),
    "receipts": ((ANY, f"{C}{R}/rooms/.*/receipt"), (ANY, f"{C}{R}/rooms/.*/read_markers")),
    "presence": ((ANY, f"{C}{V}/presence/"),),
    "user_directory": ((ANY, f"{C}{R}/user_directory/search$"),),
    "push_rules": (("GET", f"{C}{V}/pushrules/"),),
    "pagination": ((ANY, f"{C}{V}/rooms/.*/messages$"),),
    "typing": ((ANY, f"{C}{V}/rooms/.*/typing"),),
    "to_device": ((ANY, f"{C}{R}/sendToDevice/"),),
}
