"""deploy.yaml keys for rollouts (issue 17), hooks and SQLite snapshots (issue 18),
compressed uploads (issue 21) and logs for every service manager (issue 16)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from capview.config import DataConfig, HooksConfig, Rollout, load_config
from capview.errors import ConfigError

HEAD = "app: my-app\ndeploy_path: /srv/apps/my-app\n"


def load(tmp_path: Path, text: str):
    p = tmp_path / "deploy.yaml"
    p.write_text(textwrap.dedent(text).lstrip("\n"))
    return load_config(p)


def test_defaults(tmp_path: Path) -> None:
    env = load(tmp_path, HEAD + "environments:\n  prod:\n    hosts: [vps1]\n").env("prod")
    s = env.hosts[0].settings
    assert env.rollout == Rollout()
    assert s.hooks == HooksConfig() and s.hooks.timeout == 300.0
    assert s.data == DataConfig(sqlite=(), snapshots=5)
    assert s.upload.compress == "auto"


def test_rollout_options_top_and_env(tmp_path: Path) -> None:
    cfg = load(tmp_path, HEAD + """
canary_wait: 1m
environments:
  prod:
    strategy: parallel
    batch_size: 25%
    canary: 1
    on_failure: stop
    hosts: [vps1, vps2]
  staging:
    batch_size: 2
    canary_wait: 0
    hosts: [vps3]
""")
    prod, staging = cfg.env("prod"), cfg.env("staging")
    assert prod.rollout == Rollout(batch_size=None, batch_percent=25, canary=1, canary_wait=60.0, on_failure="stop")
    assert staging.rollout == Rollout(batch_size=2, batch_percent=None, canary=0, canary_wait=0.0)


def test_hooks_and_data_override_per_host(tmp_path: Path) -> None:
    cfg = load(tmp_path, HEAD + """
hooks:
  after_upload: "npm ci"
  before_start: ["./migrate.sh", "echo migrated"]
  timeout: 2m
data: {sqlite: [data/app.db]}
environments:
  prod:
    hosts:
      - {name: p1, host: vps1}
      - {name: p2, host: vps2, hooks: {before_start: []}, data: {snapshots: 0}}
""")
    p1, p2 = cfg.env("prod").hosts
    assert p1.settings.hooks.after_upload == ("npm ci",)
    assert p1.settings.hooks.at("before_start") == ("./migrate.sh", "echo migrated")
    assert p1.settings.hooks.timeout == 120.0
    assert p2.settings.hooks.before_start == () and p2.settings.hooks.after_upload == ("npm ci",)
    assert p1.settings.data == DataConfig(sqlite=("data/app.db",), snapshots=5)
    assert p2.settings.data.snapshots == 0


def test_logs_allowed_for_every_manager(tmp_path: Path) -> None:
    cfg = load(tmp_path, HEAD + """
service: {manager: systemd-user, unit: my-app, logs: "tail -n 200 logs/app.log"}
environments: {prod: {hosts: [vps1]}}
""")
    assert cfg.env("prod").hosts[0].settings.service.logs == "tail -n 200 logs/app.log"


BAD = [
    ("batch_size: 0%\n", "batch_size", "between 1% and 100%"),
    ("batch_size: half\n", "batch_size", "is not a batch size"),
    ("batch_size: 0\n", "batch_size", "at least 1"),
    ("canary: -1\n", "canary", "at least 0"),
    ("on_failure: revert\n", "on_failure", "did you mean 'revert_all'?"),
    ("upload: {compress: zstd}\n", "upload.compress", "use one of: auto, never, always"),
    ("hooks: {before_stop: [x]}\n", "hooks.before_stop", "did you mean 'before_start'?"),
    ("hooks: {before_start: [\"\"]}\n", "hooks.before_start[0]", "must not be empty"),
    ("data: {sqlite: [../app.db]}\n", "data.sqlite[0]", "must stay inside shared/"),
    ("data: {sqlite: [db/app.db]}\n", "data.sqlite[0]", "is not inside a shared path"),
    ("data: {snapshots: -1}\n", "data.snapshots", "between 0 and 1000"),
]


@pytest.mark.parametrize("line,path,needle", BAD, ids=[b[1] + "-" + b[2][:12] for b in BAD])
def test_bad_values_are_one_located_line(tmp_path: Path, line: str, path: str, needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        load(tmp_path, HEAD + line + "environments: {prod: {hosts: [vps1]}}\n")
    msg = str(err.value)
    assert "\n" not in msg and f": {path}: " in msg and needle in msg, msg
    assert msg.startswith(str(tmp_path / "deploy.yaml") + ":3:"), msg


def test_env_option_at_host_level_says_where_it_belongs(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="canary is set per environment, not per host"):
        load(tmp_path, HEAD + "environments:\n  prod:\n    hosts:\n      - {host: vps1, canary: 1}\n")
