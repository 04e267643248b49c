"""A strict check of a generated document against the Traefik v3 subset capview emits."""

from __future__ import annotations

import re
import shlex
from typing import Any
from urllib.parse import urlsplit



q = shlex.quote

# --------------------------------------------------------------------------- the validator

# The v3 schema subset capview emits: allowed keys -> required?
_ROUTER_KEYS = {"rule": True, "entryPoints": False, "service": True, "middlewares": False}
_RETRY_KEYS = {"attempts": True, "initialInterval": False}
_ERRORS_KEYS = {"status": True, "service": True, "query": False}
_MIDDLEWARE_TYPES = ("retry", "errors")
V3_MATCHERS = frozenset({
    "Header", "HeaderRegexp", "Host", "HostRegexp", "Method", "Path", "PathPrefix",
    "PathRegexp", "Query", "QueryRegexp", "ClientIP",
})
_GO_DURATION_RE = re.compile(r"^(?:[0-9]+(?:\.[0-9]+)?(?:ns|us|µs|ms|s|m|h))+$")
_STATUS_RE = re.compile(r"^([0-9]{3})(?:-([0-9]{3}))?$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _keys(obj: Any, path: str, allowed: dict[str, bool], errs: list[str]) -> bool:
    if not isinstance(obj, dict):
        errs.append(f"{path}: must be a mapping, got {type(obj).__name__}")
        return False
    for k in obj:
        if k not in allowed:
            errs.append(f"{path}.{k}: unknown key (allowed: {', '.join(allowed)})")
    for k, required in allowed.items():
        if required and k not in obj:
            errs.append(f"{path}.{k}: required")
    return True


def _check_name(kind: str, name: Any, path: str, errs: list[str]) -> None:
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        errs.append(f"{path}: invalid {kind} name {name!r} (letters, digits, . _ -; no '@')")


def _check_url(url: Any, path: str, errs: list[str]) -> None:
    if not isinstance(url, str) or not url or any(c.isspace() for c in url):
        errs.append(f"{path}: must be a URL string without spaces, got {url!r}")
        return
    try:
        u = urlsplit(url)
        port = u.port
    except ValueError as e:
        errs.append(f"{path}: invalid URL {url!r}: {e}")
        return
    if u.scheme not in ("http", "https"):
        errs.append(f"{path}: scheme must be http or https, got {url!r}")
    if not u.hostname:
        errs.append(f"{path}: URL has no host: {url!r}")
    if port is not None and not 1 <= port <= 65535:
        errs.append(f"{path}: port out of range in {url!r}")
    if u.username or u.password or u.query or u.fragment:
        errs.append(f"{path}: URL must not carry credentials, a query or a fragment: {url!r}")


def check_rule(rule: Any) -> list[str]:
    """Problems with a v3 router rule (empty list when it looks valid)."""
    if not isinstance(rule, str) or not rule.strip():
        return ["must be a non-empty string"]
    errs = []
    # Split out the values (backtick or double-quoted Go string literals) first.
    rest, i, n = [], 0, len(rule)
    while i < n:
        c = rule[i]
        if c == "`":
            j = rule.find("`", i + 1)
            if j < 0:
                return ["unterminated backtick value"]
            rest.append(" V ")
            i = j + 1
        elif c == '"':
            j = i + 1
            while j < n and rule[j] != '"':
                j += 2 if rule[j] == "\\" else 1
            if j >= n:
                return ["unterminated double-quoted value"]
            rest.append(" V ")
            i = j + 1
        elif c == "'":
            return ["single quotes are not accepted (values are Go string literals: use backticks)"]
        else:
            rest.append(c)
            i += 1
    skeleton = "".join(rest)
    depth = 0
    for c in skeleton:
        depth += c == "("
        depth -= c == ")"
        if depth < 0:
            return ["unbalanced parentheses"]
    if depth:
        return ["unbalanced parentheses"]
    calls = re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*\(", skeleton)
    if not calls:
        errs.append("no matcher, e.g. PathPrefix(`/`)")
    for name in calls:
        if name not in V3_MATCHERS:
            errs.append(f"unknown v3 matcher {name}() (v3: {', '.join(sorted(V3_MATCHERS))})")
    leftovers = re.sub(r"[A-Za-z_][A-Za-z0-9_]*\s*\(|[()]|V|,|&&|\|\||!|\s", "", skeleton)
    if leftovers:
        errs.append(f"unexpected text {leftovers!r}")
    return errs


def validate_dynamic_config(doc: Any) -> list[str]:
    """Strictly check a document against the Traefik v3 file-provider subset capview emits.

    Returns one ``path: problem`` string per problem (empty: valid). Checked: allowed and
    required keys per object, types, names, every router's service and middlewares exist,
    rules use only v3 matchers with backtick/double-quoted values, server URLs are
    http(s)://host[:port], errors.status ranges, retry.attempts >= 1, initialInterval a Go
    duration, errors.service exists, and nothing defined goes unused.
    """
    errs: list[str] = []
    if not _keys(doc, "(document)", {"http": True}, errs) or "http" not in doc:
        return errs
    http = doc["http"]
    if not _keys(http, "http", {"routers": True, "services": True, "middlewares": False}, errs):
        return errs
    routers = http.get("routers", {})
    services = http.get("services", {})
    middlewares = http.get("middlewares", {})
    for section, value in (("routers", routers), ("services", services), ("middlewares", middlewares)):
        if not isinstance(value, dict) or (section != "middlewares" and not value):
            errs.append(f"http.{section}: must be a non-empty mapping")
    if not isinstance(routers, dict) or not isinstance(services, dict) or not isinstance(middlewares, dict):
        return errs

    used_services: set[str] = set()
    used_middlewares: set[str] = set()

    for name, svc in services.items():
        p = f"http.services.{name}"
        _check_name("service", name, p, errs)
        if not _keys(svc, p, {"loadBalancer": True}, errs) or "loadBalancer" not in svc:
            continue
        lb = svc["loadBalancer"]
        if not _keys(lb, f"{p}.loadBalancer", {"servers": True}, errs) or "servers" not in lb:
            continue
        servers = lb["servers"]
        if not isinstance(servers, list) or not servers:
            errs.append(f"{p}.loadBalancer.servers: must be a non-empty list")
            continue
        for i, srv in enumerate(servers):
            sp = f"{p}.loadBalancer.servers[{i}]"
            if _keys(srv, sp, {"url": True}, errs) and "url" in srv:
                _check_url(srv["url"], f"{sp}.url", errs)

    for name, mw in middlewares.items():
        p = f"http.middlewares.{name}"
        _check_name("middleware", name, p, errs)
        if not isinstance(mw, dict):
            errs.append(f"{p}: must be a mapping, got {type(mw).__name__}")
            continue
        kinds = [k for k in mw if k in _MIDDLEWARE_TYPES]
        for k in mw:
            if k not in _MIDDLEWARE_TYPES:
                errs.append(f"{p}.{k}: unknown middleware type (allowed: {', '.join(_MIDDLEWARE_TYPES)})")
        if len(kinds) != 1:
            if not kinds and not [k for k in mw if k not in _MIDDLEWARE_TYPES]:
                errs.append(f"{p}: declares no middleware type")
            elif len(kinds) > 1:
                errs.append(f"{p}: declares {len(kinds)} types; a middleware has exactly one")
            continue
        kind = kinds[0]
        body = mw[kind]
        bp = f"{p}.{kind}"
        if kind == "retry":
            if not _keys(body, bp, _RETRY_KEYS, errs):
                continue
            if "attempts" in body and not (_is_int(body["attempts"]) and body["attempts"] >= 1):
                errs.append(f"{bp}.attempts: must be an integer >= 1, got {body['attempts']!r}")
            if "initialInterval" in body:
                iv = body["initialInterval"]
                ok = (isinstance(iv, str) and _GO_DURATION_RE.fullmatch(iv)) or (
                    (_is_int(iv) or isinstance(iv, float)) and iv >= 0)
                if not ok:
                    errs.append(f"{bp}.initialInterval: must be a Go duration like '100ms' or seconds, got {iv!r}")
        else:
            if not _keys(body, bp, _ERRORS_KEYS, errs):
                continue
            if "status" in body:
                st = body["status"]
                if not isinstance(st, list) or not st:
                    errs.append(f"{bp}.status: must be a non-empty list of codes or ranges like '502-504'")
                else:
                    for i, s in enumerate(st):
                        m = _STATUS_RE.fullmatch(s) if isinstance(s, str) else None
                        lo = int(m.group(1)) if m else 0
                        hi = int(m.group(2) or lo) if m else 0
                        if not m or not 100 <= lo <= hi <= 599:
                            errs.append(f"{bp}.status[{i}]: must be a string code or range like '502-504', got {s!r}")
            if "service" in body:
                _service_ref(body["service"], bp, services, used_services, errs)
            if "query" in body:
                qy = body["query"]
                if not isinstance(qy, str) or not qy.startswith("/") or any(c.isspace() for c in qy):
                    errs.append(f"{bp}.query: must be a path starting with '/', got {qy!r}")

    for name, rt in routers.items():
        p = f"http.routers.{name}"
        _check_name("router", name, p, errs)
        if not _keys(rt, p, _ROUTER_KEYS, errs):
            continue
        if "rule" in rt:
            for problem in check_rule(rt["rule"]):
                errs.append(f"{p}.rule: {problem}")
        if "entryPoints" in rt:
            eps = rt["entryPoints"]
            if (not isinstance(eps, list) or not eps
                    or not all(isinstance(e, str) and _NAME_RE.fullmatch(e) for e in eps)):
                errs.append(f"{p}.entryPoints: must be a non-empty list of entry point names, got {eps!r}")
            elif len(set(eps)) != len(eps):
                errs.append(f"{p}.entryPoints: duplicates in {eps!r}")
        if "service" in rt:
            _service_ref(rt["service"], p, services, used_services, errs)
        if "middlewares" in rt:
            mws = rt["middlewares"]
            if not isinstance(mws, list) or not all(isinstance(m, str) for m in mws):
                errs.append(f"{p}.middlewares: must be a list of middleware names, got {mws!r}")
            else:
                if len(set(mws)) != len(mws):
                    errs.append(f"{p}.middlewares: duplicates in {mws!r}")
                for m in mws:
                    if m not in middlewares:
                        errs.append(f"{p}.middlewares: {m!r} is not defined in http.middlewares")
                    else:
                        used_middlewares.add(m)

    for name in services:
        if name not in used_services:
            errs.append(f"http.services.{name}: defined but used by no router or errors middleware")
    for name in middlewares:
        if name not in used_middlewares:
            errs.append(f"http.middlewares.{name}: defined but used by no router")
    return errs


def _service_ref(svc: object, path: str, services: dict, used: set[str], errs: list[str]) -> None:
    """A ``service`` key must name a service of http.services (then it counts as used)."""
    if not isinstance(svc, str) or svc not in services:
        errs.append(f"{path}.service: {svc!r} is not a service defined in http.services")
    else:
        used.add(svc)
