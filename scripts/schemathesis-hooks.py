"""schemathesis hooks for scripts/schemathesis: requests to the GameAnalytics collector routes
(`/v2/{game_key}/…`, `/remote_configs/v1/init`) signed as the GameAnalytics SDKs sign them, so
that their generated bodies reach the decoder instead of stopping at the 401 of an unknown game
key or a wrong signature.

A case is signed only when it carries the placeholder credential of the `gameanalytics_hmac`
scheme (the auth configuration's value): then the game key becomes the one the gateway was
started with, the body is serialised here (as schemathesis would: JSON) and `Authorization`
becomes the base64 HMAC-SHA256 of exactly those bytes under the game's secret key. Cases
without it (ignored_auth, missing_required_header) are sent as generated and must be refused.
"""

import base64
import hashlib
import hmac
import json
import os

import schemathesis
from schemathesis.core import NotSet

PLACEHOLDER = os.environ.get("GM_SCHEMATHESIS_GA_PLACEHOLDER", "sign-with-the-game-secret")
GAME_KEY = os.environ.get("GM_SCHEMATHESIS_GA_GAME_KEY", "")
SECRET = os.environ.get("GM_SCHEMATHESIS_GA_SECRET", "").encode()


@schemathesis.hook
def before_call(context, case, kwargs):
    path = case.operation.path
    if not (path.startswith("/v2/") or path.startswith("/remote_configs/")) or not GAME_KEY:
        return
    headers = case.headers or {}
    name = next((k for k in headers if k.lower() == "authorization"), None)
    if name is None or headers[name] != PLACEHOLDER:
        return
    if case.path_parameters and "game_key" in case.path_parameters:
        case.path_parameters["game_key"] = GAME_KEY
    if path.startswith("/remote_configs/"):
        if case.query is None:
            case.query = {}
        case.query["game_key"] = GAME_KEY
    if isinstance(case.body, NotSet):
        body = b""
    elif isinstance(case.body, (bytes, bytearray)):
        body = bytes(case.body)
    elif isinstance(case.body, str):
        body = case.body.encode("utf-8")
    else:
        body = json.dumps(case.body).encode("utf-8")
    kwargs["data"] = body
    signature = base64.b64encode(hmac.new(SECRET, body, hashlib.sha256).digest()).decode()
    case.headers[name] = signature
