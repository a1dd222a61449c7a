"""schemathesis hooks for scripts/schemathesis.sh (loaded through SCHEMATHESIS_HOOKS).

Each works around what an OpenAPI document cannot say or what schemathesis
4.32 gets wrong, on positive cases only (the ones its checks hold to "must
be accepted"); negative cases go out as generated. docs/http.md, "OpenAPI
and schemathesis", explains each.
"""

import calendar
import datetime
import itertools
import re

import schemathesis

_counter = itertools.count()

# The entity-tag forms of the precondition headers. schemathesis's coverage
# phase draws header values from [A-Za-z0-9] only, so for a pattern that
# needs quotes it sends e.g. `If-Match: 0` and calls the case positive.
_HEADER_PATTERNS = {}


def _pattern(case, name):
    key = (case.operation.label, name)
    if key not in _HEADER_PATTERNS:
        pattern = None
        for parameter in case.operation.definition.raw.get("parameters", []):
            if parameter.get("in") == "header" and parameter.get("name", "").lower() == name.lower():
                pattern = parameter.get("schema", {}).get("pattern")
        _HEADER_PATTERNS[key] = re.compile(pattern) if pattern else None
    return _HEADER_PATTERNS[key]


def _is_positive(case):
    meta = case.meta
    return meta is not None and meta.generation.mode.is_positive


@schemathesis.hook
def before_call(context, case, kwargs):
    if not _is_positive(case) or case.headers is None:
        return
    headers = case.headers
    # A positive header value that breaks its own pattern is not positive:
    # drop it (every such header is optional).
    for name in list(headers):
        pattern = _pattern(case, name)
        value = headers[name]
        if pattern is not None and isinstance(value, str) and not pattern.search(value):
            del headers[name]
    # An Idempotency-Key names one request: the same key with another
    # request is refused (422 idempotency-key-reused) however valid each
    # request is on its own. Give every positive case a key of its own.
    if "Idempotency-Key" in headers:
        headers["Idempotency-Key"] = f"schemathesis-{next(_counter)}"
    # OpenAPI cannot say that two parameters or members exclude each other
    # or must be ordered; a positive case keeps the first of such a pair.
    # (Each pair is refused by the server with a problem, tested in
    # http/tests; docs/http.md lists them.)
    path, method = case.operation.path, case.method.upper()
    body = case.body if isinstance(case.body, dict) else None
    if isinstance(case.query, dict) and case.query.get("expected_version") is not None:
        headers.pop("If-Match", None)
        headers.pop("If-None-Match", None)
    if "If-Match" in headers:
        # The header (which a link fills from the ETag) wins over the body.
        headers.pop("If-None-Match", None)
        headers.pop("Strata-Merge-Base", None)
        if body is not None:
            body.pop("_version", None)
            body.pop("expected_version", None)
    if method == "PATCH":
        headers.pop("If-None-Match", None)
    if "If-Unmodified-Since" in headers:
        fixed = _with_its_weekday(headers["If-Unmodified-Since"])
        if fixed is None:
            del headers["If-Unmodified-Since"]
        else:
            headers["If-Unmodified-Since"] = fixed
    if path == "/subscriptions/groups/{group}" and method == "PUT" and body is not None:
        if body.get("start") is not None and body.get("start_after") is not None:
            del body["start_after"]
        retry_delay = body.get("retry_delay_ms")
        retry_delay = 100 if retry_delay is None else retry_delay
        if isinstance(body.get("max_retry_delay_ms"), (int, float)) and isinstance(retry_delay, (int, float)):
            if body["max_retry_delay_ms"] < retry_delay:
                del body["max_retry_delay_ms"]
    query = case.query if isinstance(case.query, dict) else None
    # The live routes take at most 64 filter terms in all, over five
    # repeatable parameters each of at most 64: keep the first 64.
    if path.startswith("/subscriptions/") and method == "GET" and query is not None:
        room = 63 if "{category}" in path or "{stream}" in path else 64
        for name in ("event_type", "event_type_prefix", "stream", "stream_prefix", "category"):
            terms = query.get(name)
            if isinstance(terms, list):
                query[name] = terms[:room]
                room -= len(query[name])
            elif terms is not None:
                if room == 0:
                    del query[name]
                else:
                    room -= 1
    if path == "/streams" and method == "GET" and query is not None:
        if query.get("prefix") is not None and query.get("category") is not None:
            del query["category"]
    if path == "/views/stock" and query is not None and "low" in query and "after" in query:
        if not re.match(r"^-?[0-9]+:", str(query["after"])):
            del query["after"]


_DATE = re.compile(r"^[A-Z][a-z]{2}, ([0-9]{2}) ([A-Z][a-z]{2}) ([0-9]{4}) ([0-9]{2}:[0-9]{2}:[0-9]{2}) GMT$")
_MONTHS = {name: number for number, name in enumerate(calendar.month_abbr) if name}


def _with_its_weekday(value):
    """An IMF-fixdate with the weekday its date has (a pattern cannot say which), or None."""
    m = _DATE.match(value) if isinstance(value, str) else None
    if m is None:
        return None
    day, month, year, time = m.groups()
    try:
        date = datetime.date(int(year), _MONTHS[month], int(day))
    except (KeyError, ValueError):
        return None
    return f"{calendar.day_abbr[date.weekday()]}, {day} {month} {year} {time} GMT"


# 422 problem types that refuse a well-formed request for what it means in
# the server's current state or the domain's rules (an unknown SKU, a
# payment that is not the order's total, two lines of one SKU), which a
# schema cannot say. scripts/schemathesis.toml lets positive cases be
# answered 422; this check holds every other 422 type (`invalid-body`,
# `idempotency-key-reused`, ...) to "valid data must be accepted".
DOMAIN_422 = {"/problems/unknown-sku", "/problems/payment-mismatch", "/problems/validation-failed"}


@schemathesis.check
def positive_data_refused_only_by_the_domain(ctx, response, case):
    if not _is_positive(case) or response.status_code != 422:
        return None
    try:
        kind = response.json().get("type")
    except Exception:
        kind = None
    if kind not in DOMAIN_422:
        raise AssertionError(f"A schema-valid request was refused with 422 {kind}, not a domain rule")
    return None


@schemathesis.check
def server_errors_only_by_design(ctx, response, case):
    """The one 5xx the API answers by design: 503 `read-model-lagging`, when
    `min_position` names a position the read model has not applied within
    the server's wait (a position beyond the log's head never is).
    scripts/schemathesis.toml lets the read routes answer 503; every other
    5xx, and a 503 of another type or without `min_position`, fails."""
    if response.status_code < 500:
        return None
    try:
        kind = response.json().get("type")
    except Exception:
        kind = None
    query = case.query if isinstance(case.query, dict) else {}
    if response.status_code == 503 and kind == "/problems/read-model-lagging" and "min_position" in query:
        return None
    raise AssertionError(f"Server error {response.status_code} {kind}")
