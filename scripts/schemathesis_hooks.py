"""schemathesis hooks for scripts/api-fuzz.sh (SCHEMATHESIS_HOOKS=schemathesis_hooks).

Signing: schemathesis cannot know an instance's Greenhouse secret key, and the instances it
creates rarely have events enabled (that takes a callback URL the policy accepts), so every
webhook it sent was a 404 or a 401. These hooks create one instance with events enabled before
the run (API_FUZZ_BASE and API_FUZZ_AUTH say where and as whom; its key is API_FUZZ_KEY) and
sends signed webhooks there. A generated webhook
whose instance id is a positive even number goes to that instance instead (odd ones keep testing
unknown instances); when a generated request deletes or changes it (small ids are common
guesses), the hooks make a new one like it and use that from then on. They learn the keys of
the instances the run creates too (the creation's `webhookSecret`, or the
`event.vendor.signature.key` a creation or a change sent).
A webhook to an instance whose key is known is signed over the exact bytes sent, whenever its
generated headers are valid (a well-formed `Signature`, nothing schemathesis means as invalid),
so the verified paths (200, duplicate, 400 on a body that is not a webhook) are held to the
description too. A missing or malformed `Signature`, which schemathesis generates to test the
refusal, is left as generated.

API_FUZZ_EMULATOR=1 (the run against `cargo lambda watch`): the emulator answers 500 itself,
without invoking the function, to a body that is not UTF-8 but is labelled as JSON (it hands
JSON bodies to the function as text). API Gateway base64-encodes such a body instead, and the
function decodes it (shared/aws/tests/http_events.rs covers that). So such a body goes as
application/octet-stream, which the emulator base64-encodes as API Gateway would: the function
gets the same bytes to refuse.
"""

import hashlib
import hmac
import json
import os
import re

import requests
import schemathesis
from schemathesis.core.parameters import ParameterLocation

WELL_FORMED = re.compile(r"^sha256 [0-9a-fA-F]{64}$")
MASK = "********"
KEYS: dict[str, list[str]] = {}
FIXED = None


def _renew_fixed(base_url):
    """Makes the instance signed webhooks go to (again, when the run deleted or changed it)."""
    global FIXED
    key = os.environ["API_FUZZ_KEY"]
    body = {
        "element": {"key": "greenhouse"},
        "name": "api-fuzz",
        "configuration": {"event.notification.callback.url": "http://127.0.0.1:9/hooks", "event.vendor.signature.key": key},
    }
    answer = requests.post(f"{base_url}/instances", json=body, headers={"Authorization": os.environ["API_FUZZ_AUTH"]}, timeout=20)
    answer.raise_for_status()
    FIXED = str(answer.json()["id"])
    KEYS[FIXED] = [key]


if os.environ.get("API_FUZZ_BASE"):
    _renew_fixed(os.environ["API_FUZZ_BASE"])


def _keys_of(value):
    if isinstance(value, str) and value and value != MASK:
        return [value]
    if isinstance(value, list) and value and all(isinstance(k, str) and k and k != MASK for k in value):
        return value
    return None


def _json(data):
    try:
        return json.loads(data)
    except (TypeError, ValueError):
        return None


@schemathesis.hook
def after_call(ctx, case, response):
    target = str((case.path_parameters or {}).get("id"))
    if FIXED and target == FIXED and case.operation.path == "/instances/{id}" and case.method.upper() != "GET":
        if response.status_code == 200:
            _renew_fixed(response.request.url.rsplit("/instances/", 1)[0])
        return
    if response.status_code != 200 or case.operation.path not in ("/instances", "/instances/{id}"):
        return
    if case.method.upper() not in ("POST", "PATCH", "PUT"):
        return
    answer = _json(response.content)
    sent = _json(response.request.body)
    if not isinstance(answer, dict) or "id" not in answer:
        return
    conf = sent.get("configuration") if isinstance(sent, dict) else None
    given = _keys_of(conf.get("event.vendor.signature.key")) if isinstance(conf, dict) else None
    keys = [answer["webhookSecret"]] if isinstance(answer.get("webhookSecret"), str) else given
    if keys:
        KEYS[str(answer["id"])] = keys


def _drop_header(case, name):
    for key in [k for k in (case.headers or {}) if k.lower() == name]:
        del case.headers[key]


def _is_utf8(body) -> bool:
    try:
        if isinstance(body, str):
            body.encode("utf-8")
        elif isinstance(body, (bytes, bytearray)):
            bytes(body).decode("utf-8")
    except UnicodeError:
        return False
    return True


@schemathesis.hook
def before_call(ctx, case, kwargs):
    if os.environ.get("API_FUZZ_EMULATOR") == "1" and not _is_utf8(case.body):
        case.media_type = "application/octet-stream"
        _drop_header(case, "content-type")
    target = (case.path_parameters or {}).get("id")
    # A case meant as invalid anywhere but in its body stays as generated: signing it or moving it
    # to the instance would make it valid, and its refusal is what it tests.
    meta = getattr(case, "_meta", None)
    if case.operation.path != "/events/greenhouse/{id}" or (
        meta is not None
        and any(info.mode.is_negative for loc, info in meta.components.items() if loc != ParameterLocation.BODY)
    ):
        return
    if FIXED and isinstance(target, int) and not isinstance(target, bool) and target > 0 and target % 2 == 0:
        case.path_parameters["id"] = target = int(FIXED)
    keys = KEYS.get(str(target))
    signature = next((v for k, v in (case.headers or {}).items() if k.lower() == "signature"), None)
    if not keys or not isinstance(signature, str) or not WELL_FORMED.match(signature):
        return
    # The bytes are made here and handed to the transport as they are (the body the case holds
    # stays the generated value, which schemathesis judges the answer by).
    body = case.body
    if isinstance(body, str):
        body = body.encode("utf-8", "surrogatepass")
    elif not isinstance(body, (bytes, bytearray)):
        body = json.dumps(body).encode()
    kwargs["data"] = bytes(body)
    _drop_header(case, "signature")
    case.headers["Signature"] = "sha256 " + hmac.new(keys[-1].encode(), bytes(body), hashlib.sha256).hexdigest()
