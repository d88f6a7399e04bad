"""schemathesis hooks for the run against the Lambdas under `cargo lambda watch`.

The emulator answers 500 itself, without invoking the function, to a body that is not UTF-8 but
is labelled as JSON (it passes JSON bodies to the function as text). API Gateway base64-encodes
such a body instead, and the function decodes it (shared/aws/tests/http_events.rs covers that).
So a request whose body is not UTF-8 goes as application/octet-stream, which the emulator
base64-encodes as API Gateway would: the function still gets the same bytes to refuse.
"""

import schemathesis


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
    if not _is_utf8(case.body):
        case.media_type = "application/octet-stream"
        if case.headers:
            for name in [n for n in case.headers if n.lower() == "content-type"]:
                del case.headers[name]
