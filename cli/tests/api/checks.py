"""Checks of ours beside schemathesis's own, loaded through SCHEMATHESIS_HOOKS by cli/tests/api/fuzz.rs.

Every 4xx a service sends is the error object {"error": {"code", "message", "field"}}, and a
refused value (422, or a path or query parameter that does not parse) names its field.
"""

import json

import schemathesis

# Codes whose cause is always one field. `invalid_json` is not among them: a body that is not
# JSON at all has no field to name (a wrong value inside a JSON body does, and is checked by
# its status, 400 with a field, through `field` being present whenever the decoder had a path).
FIELD_CODES = {"validation_failed", "invalid_query", "invalid_path"}


@schemathesis.check
def error_object_names_the_field(ctx, response, case):
    status = response.status_code
    if not 400 <= status < 500:
        return None
    try:
        body = json.loads(response.content)
    except ValueError:
        raise AssertionError(f"a {status} without a JSON body: {response.content[:200]!r}")
    error = body.get("error") if isinstance(body, dict) else None
    if not (
        isinstance(error, dict)
        and isinstance(error.get("code"), str)
        and isinstance(error.get("message"), str)
    ):
        raise AssertionError(f"a {status} whose body is not the error object: {body}")
    if (status == 422 or error["code"] in FIELD_CODES) and not error.get("field"):
        raise AssertionError(f"a {status} `{error['code']}` that names no field: {body}")
    return None
