"""deploy.yaml loading: resolution top -> environment -> host, and one-line errors."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from capview.config import (
    BuildConfig,
    Config,
    HealthConfig,
    ServiceConfig,
    SharedConfig,
    load_config,
)
from capview.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str, name: str = "deploy.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def load(tmp_path: Path, text: str) -> Config:
    return load_config(write(tmp_path, text))


MINIMAL = """
app: my-app
deploy_path: /srv/apps/my-app
environments:
  prod:
    hosts: [vps1]
"""


# --------------------------------------------------------------------------- valid files


def test_example_deploy_yaml_at_repo_root_loads() -> None:
    cfg = load_config(REPO / "deploy.yaml")
    assert [e.name for e in cfg.environments] == ["prod", "staging"]
    prod = cfg.env("prod")
    assert len(prod.hosts) == 2
    assert prod.strategy == "rolling"
    p1 = prod.host("prod-1")
    assert (p1.host, p1.user, p1.port, p1.env) == ("vps1.example.com", "deploy_user", 22, "prod")
    s = p1.settings
    assert s.app == "my-app"
    assert s.deploy_path == "/home/deploy_user/web/my-app"
    assert s.source == REPO / "dist"
    assert s.build == BuildConfig(command="podman build -t {image}:{version} .", image="my-app")
    assert s.service == ServiceConfig(manager="systemd-user", unit="my-app")
    assert s.health is not None and s.health.timeout == 30.0
    # prod-2 overrides only health.url; the rest of health is inherited
    h2 = prod.host("prod-2").settings.health
    assert h2 == HealthConfig(url="http://127.0.0.1:8081/health", timeout=30.0, interval=1.0, expect_status=200)
    staging = cfg.env("staging")
    st = staging.hosts[0]
    assert (st.name, st.host, st.env) == ("staging", "staging", "staging")
    assert st.settings.keep_releases == 3
    assert st.settings.service == ServiceConfig(manager="systemd-user", unit="my-app-staging")
    assert st.settings.traefik is None
    assert staging.settings.deploy_path == "/home/deploy_user/web/my-app-staging"


def test_minimal_file_gets_defaults(tmp_path: Path) -> None:
    cfg = load(tmp_path, MINIMAL)
    assert cfg.path == tmp_path / "deploy.yaml"
    env = cfg.env("prod")
    (host,) = env.hosts
    assert (host.name, host.host, host.user, host.port, host.env) == ("vps1", "vps1", None, None, "prod")
    s = host.settings
    assert s.source == tmp_path  # default: deploy.yaml's directory
    assert s.keep_releases == 5
    assert s.exclude == (".git",)
    assert s.shared == SharedConfig()
    assert s.build is None and s.health is None and s.traefik is None
    assert s.service.manager == "none"
    assert s.upload.method == "tar"
    assert s.ssh.connect_timeout == 10.0
    assert env.settings == s
    assert (env.strategy, env.max_parallel) == ("rolling", 10)


def test_resolution_top_env_host_with_section_merge(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        """
        app: my-app
        deploy_path: /srv/apps/my-app
        keep_releases: 4
        build: {command: "podman build -t {image}:{version} {release_path}", image: my-app}
        service: {manager: systemd-user, unit: my-app}
        health: {url: "http://127.0.0.1:8080/health", timeout: 45s, interval: 2s, expect_status: 204}
        shared: {dirs: [data, uploads], files: [.env]}
        environments:
          prod:
            strategy: parallel
            max_parallel: 3
            keep_releases: 8
            health: {url: "http://127.0.0.1:9000/up"}
            hosts:
              - {name: prod-1, host: vps1.example.com, user: deploy_user, port: 2222}
              - name: prod-2
                host: vps2.example.com
                deploy_path: /srv/other/my-app/
                health: {timeout: 1m}
                shared: {files: [.env, config.toml]}
          staging:
            build: null
            health: null
            service: {manager: command, start: "./run start", stop: "./run stop"}
            hosts: [stage-1]
        """,
    )
    prod = cfg.env("prod")
    assert (prod.strategy, prod.max_parallel) == ("parallel", 3)
    p1, p2 = prod.hosts
    assert (p1.user, p1.port) == ("deploy_user", 2222)
    assert p1.settings.keep_releases == 8
    assert p1.settings.health == HealthConfig(url="http://127.0.0.1:9000/up", timeout=45.0, interval=2.0, expect_status=204)
    assert p2.settings.deploy_path == "/srv/other/my-app"  # trailing slash normalised
    assert p2.settings.health == HealthConfig(url="http://127.0.0.1:9000/up", timeout=60.0, interval=2.0, expect_status=204)
    assert p2.settings.shared == SharedConfig(dirs=("data", "uploads"), files=(".env", "config.toml"))
    assert prod.settings.deploy_path == "/srv/apps/my-app"
    assert prod.settings.health is not None and prod.settings.health.timeout == 45.0
    stage = cfg.env("staging").hosts[0]
    assert stage.settings.build is None and stage.settings.health is None
    # switching manager does not inherit the other manager's keys (unit)
    assert stage.settings.service == ServiceConfig(manager="command", start="./run start", stop="./run stop")
    assert stage.settings.keep_releases == 4


@pytest.mark.parametrize(
    ("written", "seconds"),
    [("30s", 30.0), ("2m", 120.0), ("1h", 3600.0), ("500ms", 0.5), ("12", 12.0), ("1.5", 1.5), ('"7"', 7.0), ("2.5s", 2.5)],
)
def test_durations(tmp_path: Path, written: str, seconds: float) -> None:
    cfg = load(tmp_path, MINIMAL + f"health: {{url: 'https://x.example/health', timeout: 2h, interval: {written}}}\n"
               f"ssh: {{connect_timeout: {written}}}\n")
    s = cfg.environments[0].hosts[0].settings
    assert s.health is not None and s.health.interval == seconds
    assert s.ssh.connect_timeout == seconds


def test_relative_paths_resolve_against_deploy_yaml_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    proj = tmp_path / "proj"
    proj.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    path = write(
        proj,
        MINIMAL
        + """
source: ./build/out
ssh: {known_hosts: ~/.ssh/kh, identity_file: keys/id, keepalive: 500ms}
traefik: {mode: maintenance, maintenance_page: ./maintenance.html}
""",
    )
    cfg = load_config(os.path.relpath(path))  # a relative path to deploy.yaml, too
    s = cfg.environments[0].hosts[0].settings
    assert s.source == proj / "build" / "out"
    assert s.source.is_absolute()
    assert s.ssh.known_hosts == str(tmp_path / "home" / ".ssh" / "kh")
    assert s.ssh.identity_file == str(proj / "keys" / "id")
    assert s.ssh.keepalive == 0.5
    assert s.traefik is not None and s.traefik.maintenance_page == str(proj / "maintenance.html")
    assert cfg.path == path


def test_alias_hosts_and_unique_names_across_environments(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        """
        app: my-app
        deploy_path: /srv/apps/my-app
        environments:
          prod:
            hosts: [vps1, vps2]
          staging:
            hosts:
              - vps3
              - {host: 10.0.0.7}
        """,
    )
    assert [(h.name, h.host) for h in cfg.env("prod").hosts] == [("vps1", "vps1"), ("vps2", "vps2")]
    assert [(h.name, h.host) for h in cfg.env("staging").hosts] == [("vps3", "vps3"), ("10.0.0.7", "10.0.0.7")]
    assert cfg.env("prod").select("vps2")[0].host == "vps2"
    with pytest.raises(ConfigError, match="known: prod, staging"):
        cfg.env("qa")


def test_env_settings_fall_back_to_first_host_when_only_hosts_complete_them(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        """
        app: my-app
        deploy_path: /srv/apps/my-app
        health: {timeout: 10s}
        environments:
          prod:
            hosts:
              - {name: a, host: a.example.com, health: {url: "http://127.0.0.1:1/h"}}
              - {name: b, host: b.example.com, health: {url: "http://127.0.0.1:2/h"}}
        """,
    )
    env = cfg.env("prod")
    assert [h.settings.health.url for h in env.hosts] == ["http://127.0.0.1:1/h", "http://127.0.0.1:2/h"]  # type: ignore[union-attr]
    assert env.settings == env.hosts[0].settings


def test_yaml_anchors_and_merge_keys(tmp_path: Path) -> None:
    # merge keys: explicit keys win over merged ones
    cfg = load(
        tmp_path,
        """
        app: my-app
        deploy_path: /srv/apps/my-app
        environments:
          prod:
            hosts:
              - &p1 {name: p1, host: p1.example.com, user: deploy_user, port: 2200}
              - {<<: *p1, name: p2, host: p2.example.com, port: 22}
        """,
    )
    p1, p2 = cfg.env("prod").hosts
    assert (p2.name, p2.host, p2.user, p2.port) == ("p2", "p2.example.com", "deploy_user", 22)
    assert p1.port == 2200


def test_all_errors_are_collected_first_one_is_the_message(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        app: my-app
        deploy_path: /srv/apps/my-app
        keep_releases: 1
        exclude: ["*"]
        environments:
          prod:
            hosts: [vps1]
        """,
    )
    with pytest.raises(ConfigError) as ei:
        load_config(path)
    errors = ei.value.errors  # type: ignore[attr-defined]
    assert len(errors) == 2
    assert errors[0] == str(ei.value)
    assert errors[0].startswith(f"{path}:3:16: keep_releases:")
    assert errors[1].startswith(f"{path}:4:11: exclude[0]:")


def test_typo_is_reported_before_the_missing_key_it_causes(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL.replace("deploy_path:", "deploy_pth:"))
    with pytest.raises(ConfigError) as ei:
        load_config(path)
    assert str(ei.value).startswith(f"{path}:2:1: deploy_pth: unknown key; did you mean 'deploy_path'?")


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope" / "deploy.yaml"
    with pytest.raises(ConfigError) as ei:
        load_config(path)
    msg = str(ei.value)
    assert msg.startswith(f"{path}: file not found")
    assert "-c FILE" in msg and "README" in msg
    assert "\n" not in msg


# --------------------------------------------------------------------------- broken files

HEAD = "app: my-app\ndeploy_path: /srv/apps/my-app\n"  # lines 1-2
ENVS = "environments:\n  prod:\n    hosts: [vps1]\n"  # 3 lines


def top(extra: str) -> str:
    """extra is at line 3; environments follow it."""
    return HEAD + extra + ENVS


def hostmap(entry: str) -> str:
    """a single host entry (a flow mapping) at line 6."""
    return HEAD + "environments:\n  prod:\n    hosts:\n      - " + entry + "\n"


# (id, yaml text, expected line, key path in the message or None, expected substring)
BROKEN: list[tuple[str, str, int, str | None, str]] = [
    ("unknown-key-top", top("keep_release: 3\n"), 3, "keep_release", "did you mean 'keep_releases'?"),
    ("unknown-key-nested", top("health:\n  url: http://127.0.0.1/h\n  timeuot: 5s\n"), 5, "health.timeuot", "did you mean 'timeout'?"),
    ("unknown-key-host", hostmap("{host: vps1, deploy-path: /srv/x/y}"), 6, "environments.prod.hosts[0].deploy-path", "did you mean 'deploy_path'?"),
    ("unknown-key-env", HEAD + "environments:\n  prod:\n    stratgy: rolling\n    hosts: [vps1]\n", 5, "environments.prod.stratgy", "did you mean 'strategy'?"),
    ("unknown-key-no-match", top("zzz: 1\n"), 3, "zzz", "unknown key; valid keys: app, deploy_path"),
    ("key-at-wrong-level", top("hosts: [vps9]\n"), 3, "hosts", "environments.<name>.hosts"),
    ("bad-duration", top("health: {url: 'http://h/x', timeout: 30x}\n"), 3, "health.timeout", "'30x' is not a duration"),
    ("zero-duration", top("ssh:\n  keepalive: 0s\n"), 4, "ssh.keepalive", "must be a finite duration greater than 0"),
    ("bool-duration", top("ssh:\n  connect_timeout: yes\n"), 4, "ssh.connect_timeout", "is not a duration"),
    ("deploy-path-root", "app: a\ndeploy_path: /\n" + ENVS, 2, "deploy_path", "filesystem root"),
    ("deploy-path-tilde", "app: a\ndeploy_path: ~/web/app\n" + ENVS, 2, "deploy_path", "'~/web/app' starts with '~', which is not expanded on the host"),
    ("deploy-path-tilde-null", "app: a\ndeploy_path: ~\n" + ENVS, 2, "deploy_path", "'~' is not expanded on the host (and a bare ~ is null in YAML)"),
    ("deploy-path-tilde-quoted", "app: a\ndeploy_path: '~'\n" + ENVS, 2, "deploy_path", "which is not expanded on the host"),
    ("deploy-path-relative", "app: a\ndeploy_path: web/app\n" + ENVS, 2, "deploy_path", "is relative; write an absolute path"),
    ("deploy-path-quote", "app: a\ndeploy_path: /srv/it's/app\n" + ENVS, 2, "deploy_path", "contains a quote"),
    ("deploy-path-newline", 'app: a\ndeploy_path: "/srv/app\\nrm -rf"\n' + ENVS, 2, "deploy_path", "'/srv/app\\nrm -rf' contains a newline"),
    ("deploy-path-nul", 'app: a\ndeploy_path: "/srv/app\\0"\n' + ENVS, 2, "deploy_path", "contains a NUL byte"),
    ("deploy-path-space", "app: a\ndeploy_path: /srv/my app\n" + ENVS, 2, "deploy_path", "contains a space"),
    ("deploy-path-dotdot", "app: a\ndeploy_path: /srv/app/../../etc\n" + ENVS, 2, "deploy_path", "'..' component"),
    ("deploy-path-backslash", "app: a\ndeploy_path: '/srv/a\\b'\n" + ENVS, 2, "deploy_path", "backslash"),
    ("deploy-path-too-shallow", "app: a\ndeploy_path: /home/\n" + ENVS, 2, "deploy_path", "/home is too close to the root"),
    ("deploy-path-dollar", "app: a\ndeploy_path: /srv/$HOME/x\n" + ENVS, 2, "deploy_path", "contains '$'"),
    ("deploy-path-host-override", hostmap("{host: vps1, deploy_path: /opt}"), 6, "environments.prod.hosts[0].deploy_path", "too close to the root"),
    ("shared-dotdot", top("shared: {dirs: [../x]}\n"), 3, "shared.dirs[0]", "contains '..'"),
    ("shared-absolute", top("shared:\n  files: [/etc/passwd]\n"), 4, "shared.files[0]", "is absolute"),
    ("shared-capview", top("shared:\n  dirs:\n    - data\n    - .capview/x\n"), 6, "shared.dirs[1]", "reserved"),
    ("shared-dup-across", top("shared:\n  dirs: [data]\n  files: [data]\n"), 5, "shared.files[0]", "both shared.dirs and shared.files"),
    ("shared-dup-in-list", top("shared: {dirs: [data, data]}\n"), 3, "shared.dirs[1]", "listed twice"),
    ("shared-not-normalised", top("shared: {dirs: [./data]}\n"), 3, "shared.dirs[0]", "write it as 'data'"),
    ("exclude-star", top("exclude:\n  - .git\n  - '*'\n"), 5, "exclude[1]", "would exclude everything"),
    ("exclude-slash", top("exclude: [/]\n"), 3, "exclude[0]", "would exclude everything"),
    ("exclude-not-list", top("exclude: .git\n"), 3, "exclude", "expected a list of strings"),
    ("duplicate-key", "app: a\ndeploy_path: /srv/apps/a\napp: b\n" + ENVS, 3, "app", "duplicate key (first set on line 1)"),
    ("duplicate-key-nested", top("health:\n  url: http://h/\n  url: http://h/2\n"), 5, "health.url", "duplicate key"),
    ("top-is-list", "- app: a\n- deploy_path: /srv/a/b\n", 1, "top level", "expected a mapping with app, deploy_path and environments, got a list"),
    ("top-is-scalar", "just some words\n", 1, "top level", "got a string"),
    ("yaml-syntax", "app: my-app\ndeploy_path: /srv/apps/x\nenvironments: {prod: {hosts: [vps1]}\n", 4, None, "YAML syntax error"),
    ("yaml-bad-indent", "app: my-app\n  deploy_path: /srv/apps/x\n", 2, None, "YAML syntax error: mapping values are not allowed"),
    ("yaml-tab", "app: my-app\ndeploy_path: /srv/apps/x\nenvironments:\n\tprod: {}\n", 4, None, "not tabs"),
    ("yaml-two-documents", MINIMAL.lstrip() + "---\napp: b\n", 6, None, "expected a single document in the stream but found another document"),
    ("yaml-python-tag", "app: !!python/object/apply:os.system [echo hi]\n", 1, "app", "unsupported tag"),
    ("yaml-unknown-tag", "app: !vault abc\n", 1, "app", "cannot read this value"),
    ("manager-unknown", top("service: {manager: systemd, unit: a}\n"), 3, "service.manager", "use one of: systemd-user, command, none (did you mean 'systemd-user'?)"),
    ("systemd-user-no-unit", top("service:\n  manager: systemd-user\n"), 4, "service.manager", "needs service.unit"),
    ("command-no-stop", top("service: {manager: command, start: ./go}\n"), 3, "service.manager", "needs service.stop"),
    ("systemd-user-with-start", top("service: {manager: systemd-user, unit: a, start: ./go}\n"), 3, "service.start", "not used with manager systemd-user"),
    ("service-no-manager", top("service:\n  unit: a\n"), 4, "service.manager", "missing"),
    ("service-bad-unit", top("service: {manager: systemd-user, unit: 'my app'}\n"), 3, "service.unit", "not a valid name"),
    ("placeholder-unknown", top("build:\n  command: 'podman build -t {image}:{tag} .'\n  image: a\n"), 4, "build.command", "unknown placeholder {tag}; allowed: {image}, {version}, {release_path}"),
    ("placeholder-shell-var", top("build: {command: 'make DEST=${HOME}'}\n"), 3, "build.command", "unknown placeholder {HOME}"),
    ("placeholder-image-no-image", top("build: {command: 'podman build -t {image} .'}\n"), 3, "build.command", "build.image is not set"),
    ("placeholder-unbalanced", top("build: {command: 'echo {version'}\n"), 3, "build.command", "unbalanced brace"),
    ("build-no-command", top("build:\n  image: a\n"), 4, "build.command", "missing command"),
    ("image-uppercase", top("build: {command: make, image: MyApp}\n"), 3, "build.image", "not a valid image name"),
    ("keep-releases-1", top("keep_releases: 1\n"), 3, "keep_releases", "must be at least 2, got 1 (the previous release is kept for rollback)"),
    ("keep-releases-bool", top("keep_releases: true\n"), 3, "keep_releases", "booleans are not numbers"),
    ("keep-releases-string", top("keep_releases: '5'\n"), 3, "keep_releases", "remove the quotes"),
    ("keep-releases-float", top("keep_releases: 2.5\n"), 3, "keep_releases", "expected an integer"),
    ("port-bool", hostmap("{host: vps1, port: yes}"), 6, "environments.prod.hosts[0].port", "booleans are not numbers"),
    ("port-range", hostmap("{host: vps1, port: 70000}"), 6, "environments.prod.hosts[0].port", "between 1 and 65535"),
    ("max-parallel-0", HEAD + "environments:\n  prod:\n    max_parallel: 0\n    hosts: [vps1]\n", 5, "environments.prod.max_parallel", "at least 1"),
    ("expect-status", top("health: {url: 'http://h/', expect_status: 99}\n"), 3, "health.expect_status", "between 100 and 599"),
    ("health-url-scheme", top("health: {url: 'ftp://h/x'}\n"), 3, "health.url", "not an http:// or https:// URL"),
    ("health-no-url", top("health:\n  timeout: 5s\n"), 4, "health.url", "missing"),
    ("health-interval-gt-timeout", top("health: {url: 'http://h/', timeout: 1s, interval: 5s}\n"), 3, "health.interval", "longer than timeout"),
    ("strategy-unknown", HEAD + "environments:\n  prod:\n    strategy: canary\n    hosts: [vps1]\n", 5, "environments.prod.strategy", "use one of: rolling, parallel"),
    ("upload-method", top("upload: {method: scp}\n"), 3, "upload.method", "use one of: tar, rsync"),
    ("upload-null", top("upload:\n"), 3, "upload", "cannot be null"),
    ("traefik-mode", top("traefik: {mode: redirect}\n"), 3, "traefik.mode", "use one of: retry, maintenance"),
    ("app-invalid", "app: my app\ndeploy_path: /srv/a/b\n" + ENVS, 1, "app", "not a valid name"),
    ("app-int", "app: 123\ndeploy_path: /srv/a/b\n" + ENVS, 1, "app", "expected a string, got an integer (123); put it in quotes"),
    ("missing-app", "deploy_path: /srv/a/b\n" + ENVS, 1, "app", "missing required key"),
    ("missing-environments", HEAD, 1, "environments", "missing required key"),
    ("environments-empty", HEAD + "environments: {}\n", 3, "environments", "no environments defined"),
    ("environment-null", HEAD + "environments:\n  prod:\n", 4, "environments.prod", "expected a mapping with hosts:, got nothing (null); add hosts"),
    ("environment-no-hosts", HEAD + "environments:\n  prod:\n    keep_releases: 3\n", 5, "environments.prod.hosts", "missing"),
    ("hosts-empty", HEAD + "environments:\n  prod:\n    hosts: []\n", 5, "environments.prod.hosts", "non-empty list of hosts, got an empty list"),
    ("host-name-without-host", hostmap("{name: prod-1, user: deploy}"), 6, "environments.prod.hosts[0].host", "missing; add host:"),
    ("host-user-invalid", hostmap("{host: vps1, user: Root!}"), 6, "environments.prod.hosts[0].user", "not a valid user name"),
    ("host-user-at", hostmap("{host: deploy@vps1}"), 6, "environments.prod.hosts[0].host", "put the user in user:"),
    ("host-option-injection", hostmap("{host: -oProxyCommand=x}"), 6, "environments.prod.hosts[0].host", "not a valid host name"),
    ("host-entry-int", HEAD + "environments:\n  prod:\n    hosts:\n      - 42\n", 6, "environments.prod.hosts[0]", "expected a host"),
    ("duplicate-host-names", HEAD + "environments:\n  prod:\n    hosts: [vps1]\n  staging:\n    hosts:\n      - {name: vps1, host: other}\n", 8, "environments.staging.hosts[0].name", "duplicate host name 'vps1' (also environments.prod.hosts[0] on line 5)"),
    ("env-name-invalid", HEAD + "environments:\n  'my env':\n    hosts: [vps1]\n", 4, "environments['my env']", "not a valid environment name"),
    ("key-read-as-bool", top("on: 3\n"), 3, "on", "is read as boolean true, not a string; quote it"),
    ("section-not-mapping", top("health: http://h/x\n"), 3, "health", "expected a mapping such as"),
    ("empty-file", "\n# only a comment\n", 1, None, "file is empty"),
]


@pytest.mark.parametrize(("text", "line", "key", "expected"), [c[1:] for c in BROKEN], ids=[c[0] for c in BROKEN])
def test_broken_config(tmp_path: Path, text: str, line: int, key: str | None, expected: str) -> None:
    path = tmp_path / "deploy.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as ei:
        load_config(path)
    err = ei.value
    msg = str(err)
    assert "\n" not in msg and "\r" not in msg, msg
    assert msg.startswith(f"{path}:{line}:"), msg
    col = msg[len(f"{path}:{line}:") :].split(":", 1)[0]
    assert col.isdigit() and int(col) >= 1, msg
    if key is not None:
        assert f":{col}: {key}: " in msg, msg
    assert expected in msg, msg
    assert "Traceback" not in msg
    # raised "from None" (or outside any except): no chained traceback reaches the user
    assert err.__cause__ is None
    assert err.__context__ is None or err.__suppress_context__
    assert err.exit_code == 2


def test_broken_case_count() -> None:
    assert len(BROKEN) >= 20


def test_file_over_1mb_is_refused_before_parsing(tmp_path: Path) -> None:
    path = tmp_path / "deploy.yaml"
    # 2 MB of YAML that would take a long time to parse (and is syntactically broken)
    path.write_text(MINIMAL + "x: [" + "1, " * (2 * 1024 * 1024 // 3), encoding="utf-8")
    assert path.stat().st_size > 2 * 1000 * 1000
    with pytest.raises(ConfigError) as ei:
        load_config(path)
    msg = str(ei.value)
    assert msg.startswith(f"{path}:1:1: deploy.yaml is 2.0 MB; refusing to parse files over 1 MB"), msg
    assert "\n" not in msg


def test_alias_bomb_is_refused(tmp_path: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        prev = f"*a{i - 1}"
        lines.append(f"a{i}: &a{i} [{', '.join([prev] * 10)}]")
    path = write(tmp_path, "\n".join(lines) + "\n")
    with pytest.raises(ConfigError) as ei:
        load_config(path)
    assert "too large after expanding aliases" in str(ei.value)


def test_invalid_utf8(tmp_path: Path) -> None:
    path = tmp_path / "deploy.yaml"
    path.write_bytes(b"app: my-app\ndeploy_path: /srv/\xff/x\n")
    with pytest.raises(ConfigError) as ei:
        load_config(path)
    assert str(ei.value).startswith(f"{path}:2:19: not valid UTF-8")


def test_control_characters_in_file(tmp_path: Path) -> None:
    path = tmp_path / "deploy.yaml"
    path.write_bytes(b"app: my-app\ndeploy_path: /srv/a\x07b\n")
    with pytest.raises(ConfigError) as ei:
        load_config(path)
    assert str(ei.value).startswith(f"{path}:2:20: YAML syntax error: unacceptable character #x0007")


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path)


# --------------------------------------------------------------------------- no traceback


BROKEN_FILE = "app: my-app\ndeploy_path: /\nenvironments:\n  prod:\n    hosts: [vps1]\n"


def test_subprocess_load_config_reports_one_line_without_traceback(tmp_path: Path) -> None:
    path = tmp_path / "deploy.yaml"
    path.write_text(BROKEN_FILE, encoding="utf-8")
    code = (
        "import sys\n"
        "from capview.config import load_config\n"
        "from capview.errors import ConfigError\n"
        "try:\n"
        "    load_config(sys.argv[1])\n"
        "except ConfigError as e:\n"
        "    print(e, file=sys.stderr)\n"
        "    sys.exit(e.exit_code)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, cwd=REPO, timeout=60
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert proc.stderr.startswith(f"{path}:2:14: deploy_path: '/' is the filesystem root")


def _cli_ready() -> bool:
    try:
        if importlib.util.find_spec("capview.cli") is None:
            return False
        import capview.cli as cli
    except Exception:
        return False
    return callable(getattr(cli, "main", None))


@pytest.mark.skipif(not _cli_ready(), reason="capview.cli is not ready yet")
def test_cli_on_broken_file_has_no_traceback(tmp_path: Path) -> None:
    path = tmp_path / "deploy.yaml"
    path.write_text(BROKEN_FILE, encoding="utf-8")
    outputs = []
    for args in (["check", "prod", "-c", str(path)], ["-c", str(path), "check", "prod"]):
        proc = subprocess.run(
            [sys.executable, "-m", "capview", *args], capture_output=True, text=True, cwd=tmp_path, timeout=60
        )
        assert "Traceback" not in proc.stderr, proc.stderr
        assert proc.returncode != 0
        outputs.append(proc.stdout + proc.stderr)
    if not any(f"{path}:2:" in out for out in outputs):
        pytest.skip("the CLI does not take `check ENV -c FILE` yet")
