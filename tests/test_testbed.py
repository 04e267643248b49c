"""Prove the testbed is real: real sshd with host key checking, real systemd --user,
real rootless podman builds, and the failure modes capview's preflight must detect."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import pytest

from testbed import TestHost, Testbed, rotate_host_key

TESTS_DIR = Path(__file__).resolve().parent

XDG = 'export XDG_RUNTIME_DIR=/run/user/$(id -u); '


def test_ssh_logs_in_as_deploy_user(host: TestHost):
    cp = host.ssh("id -un; id -u; echo $HOME; pwd")
    lines = cp.stdout.split()
    assert lines == [host.user, str(host.uid), str(host.home), str(host.home)]
    assert host.user == "cvdeploy"
    # base is a fresh, empty, user-owned directory
    st = host.base.stat()
    assert (st.st_uid, list(host.base.iterdir())) == (host.uid, [])
    assert host.ssh(f"test -w {host.base} && echo ok").stdout.strip() == "ok"


def test_sshd_is_a_separate_process_on_its_port(host: TestHost):
    assert host.alive() and host.host == "127.0.0.1" and host.port > 0
    kh = host.known_hosts.read_text()
    assert kh.startswith(f"[127.0.0.1]:{host.port} ssh-ed25519 ")
    # the remote side sees a connection to our port
    out = host.ssh("echo $SSH_CONNECTION").stdout.split()
    assert out[2:] == ["127.0.0.1", str(host.port)]


def test_host_key_checking_is_on(host: TestHost, tmp_path: Path):
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    argv = host.ssh_argv("true")
    argv = [a.replace(str(host.known_hosts), str(empty)) for a in argv]
    cp = subprocess.run(argv, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert cp.returncode == 255
    assert "Host key verification failed" in cp.stderr
    assert not empty.read_text(), "ssh must not have learned the key"


def test_rotated_host_key_is_refused(testbed: Testbed, host: TestHost, tmp_path: Path):
    old_port = host.port
    rotate_host_key(host)
    assert host.port == old_port and host.alive()
    cp = host.ssh("true", check=False, timeout=30)
    assert cp.returncode == 255
    assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in cp.stderr or "Host key verification failed" in cp.stderr
    # the server really is up with the new key: re-pinning it works
    pub = (host.dir / "host_ed25519.pub").read_text().split()
    host.known_hosts.write_text(f"[127.0.0.1]:{host.port} {pub[0]} {pub[1]}\n")
    assert host.ssh("id -un").stdout.strip() == host.user


def test_rsync_and_sftp_over_ssh(host: TestHost, tmp_path: Path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    for i in range(20):
        (src / "sub" / f"f{i}.txt").write_text(f"file {i}\n")
    rsh = " ".join(["ssh", *host.ssh_options()])
    subprocess.run(["rsync", "-a", "-e", rsh, f"{src}/", f"{host.target}:{host.base}/copy/"],
                   check=True, capture_output=True, text=True, timeout=60)
    out = host.ssh(f"cat {host.base}/copy/sub/f7.txt; ls {host.base}/copy/sub | wc -l").stdout.split("\n")
    assert out[:2] == ["file 7", "20"]
    assert (host.base / "copy" / "sub" / "f7.txt").stat().st_uid == host.uid
    batch = tmp_path / "batch"
    batch.write_text(f"put {src}/sub/f3.txt {host.base}/via-sftp.txt\n")
    subprocess.run(["sftp", "-b", str(batch), *[o for o in host.ssh_options() if o != "-p"
                                                 and o != str(host.port)], "-P", str(host.port),
                    host.target], check=True, capture_output=True, text=True, timeout=60)
    assert (host.base / "via-sftp.txt").read_text() == "file 3\n"


def test_systemctl_user_needs_xdg_runtime_dir_over_ssh(host: TestHost):
    # the real-world pitfall: UsePAM no => no XDG_RUNTIME_DIR in the ssh session
    bare = host.ssh("echo \"[$XDG_RUNTIME_DIR]\"; systemctl --user is-system-running", check=False)
    assert bare.stdout.startswith("[]")
    assert bare.returncode != 0
    assert "bus" in bare.stderr.lower()
    ok = host.ssh(XDG + "systemctl --user is-system-running", check=False)
    assert ok.stdout.strip() in ("running", "degraded"), ok


def test_install_unit_start_active_stop(host: TestHost):
    marker = host.base / "who"
    unit = f"tbunit-{host.base.name}"
    host.install_unit(unit, textwrap.dedent(f"""\
        [Unit]
        Description=capview testbed probe

        [Service]
        ExecStart=/bin/sh -c 'id -un > {marker}; echo $$PPID >> {marker}; exec sleep 300'
        """))
    try:
        assert (host.unit_dir() / f"{unit}.service").stat().st_uid == host.uid
        assert host.systemctl("is-active", unit).stdout.strip() == "inactive"
        host.systemctl("start", unit, check=True)
        assert host.systemctl("is-active", unit).stdout.strip() == "active"
        # and the same seen over ssh
        assert host.ssh(XDG + f"systemctl --user is-active {unit}").stdout.strip() == "active"
        pid = int(host.systemctl("show", "-p", "MainPID", "--value", unit, check=True).stdout)
        assert pid > 0 and Path(f"/proc/{pid}").stat().st_uid == host.uid
        assert marker.read_text().split()[0] == host.user
        host.systemctl("stop", unit, check=True)
        cp = host.systemctl("is-active", unit)
        assert cp.stdout.strip() in ("inactive", "failed") and cp.returncode != 0
        assert not Path(f"/proc/{pid}").exists()
    finally:
        host.systemctl("stop", unit)
        (host.unit_dir() / f"{unit}.service").unlink(missing_ok=True)
        host.systemctl("daemon-reload")


def _layer_files(archive: bytes) -> dict[str, bytes]:
    """All regular files found in the layers of a docker-archive / oci-archive tarball."""
    found: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(archive)) as outer:
        for m in outer.getmembers():
            if not m.isfile():
                continue
            data = outer.extractfile(m).read()
            try:
                with tarfile.open(fileobj=io.BytesIO(data)) as layer:
                    for lm in layer.getmembers():
                        if lm.isfile():
                            found[lm.name.lstrip("./")] = layer.extractfile(lm).read()
            except tarfile.TarError:
                continue
    return found


def test_podman_build_from_scratch_over_ssh(host: TestHost):
    ctx = host.base / "ctx"
    payload = f"hello from {host.base.name}\n"
    host.write_file(ctx / "hello.txt", payload)
    host.write_file(ctx / "Containerfile", "FROM scratch\nCOPY hello.txt /hello.txt\n")
    tag = "tbtest:1"
    try:
        cp = host.ssh(XDG + f"cd {ctx} && podman build -t {tag} . 2>&1", timeout=300)
        assert "COMMIT" in cp.stdout and "Successfully tagged localhost/tbtest:1" in cp.stdout, cp.stdout
        iid = host.ssh(XDG + f"podman image inspect --format '{{{{.Id}}}}' {tag}").stdout.strip()
        assert re.fullmatch(r"[0-9a-f]{64}", iid), iid
        # the image really contains the file: save it and look inside the layer
        host.ssh(XDG + f"podman save -o {host.base}/img.tar {tag}", timeout=120)
        files = _layer_files((host.base / "img.tar").read_bytes())
        assert files.get("hello.txt") == payload.encode(), sorted(files)
        # rootless: the image lives in the user's storage, not root's
        assert (host.home / ".local/share/containers/storage").is_dir()
    finally:
        host.ssh(XDG + f"podman rmi -f {tag}", check=False)


def test_nosd_host_has_no_user_manager(nosd_host: TestHost):
    assert nosd_host.ssh("id -un").stdout.strip() == "cvnosd"
    cp = nosd_host.ssh(XDG + "systemctl --user is-system-running", check=False)
    assert cp.returncode != 0
    assert "Failed to connect to bus" in cp.stderr, cp.stderr
    assert nosd_host.systemctl("is-system-running").returncode != 0


def test_nopodman_host_has_no_podman(nopodman_host: TestHost):
    h = nopodman_host
    for shell in ("command -v podman", "bash -lc 'command -v podman'", "sh -lc 'command -v podman'",
                  "ls /usr/bin/podman /bin/podman"):
        cp = h.ssh(shell, check=False)
        assert cp.returncode != 0 and "podman" not in cp.stdout, (shell, cp)
    cp = h.ssh("podman --version", check=False)
    assert cp.returncode == 127
    # everything else is normal: same user, user manager running, other tools present
    assert h.ssh("id -un; command -v rsync").stdout.split() == [h.user, "/usr/bin/rsync"]
    st = h.ssh(XDG + "systemctl --user is-system-running; systemctl --user --failed --no-pager", check=False)
    assert st.stdout.split()[0] in ("running", "degraded"), st
    # and only inside that host's sessions: the machine itself still has podman
    assert Path("/usr/bin/podman").exists()


def test_three_hosts_are_distinct(hosts3: list[TestHost]):
    ports = {h.port for h in hosts3}
    keys = {h.known_hosts.read_text().split()[2] for h in hosts3}
    bases = {h.base for h in hosts3}
    pids = {h.pid for h in hosts3}
    assert len(ports) == len(keys) == len(bases) == len(pids) == 3
    for h in hosts3:
        assert h.ssh("id -un").stdout.strip() == "cvdeploy"
    # host A's known_hosts does not vouch for host B
    a, b = hosts3[0], hosts3[1]
    argv = [x.replace(str(a.known_hosts), str(b.known_hosts)) for x in a.ssh_argv("true")]
    cp = subprocess.run(argv, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert cp.returncode == 255 and "Host key verification failed" in cp.stderr


def test_stop_host_removes_units_of_its_base(testbed: Testbed):
    h = testbed.start_host("tb-units")
    unit = f"tbleft-{h.base.name}"
    h.install_unit(unit, f"[Service]\nWorkingDirectory={h.base}\nExecStart=/bin/sleep 300\n"
                         "[Install]\nWantedBy=default.target\n")
    h.systemctl("enable", "--now", unit, check=True)
    assert h.systemctl("is-active", unit).stdout.strip() == "active"
    pid = int(h.systemctl("show", "-p", "MainPID", "--value", unit, check=True).stdout)
    testbed.stop_host(h)
    assert not (h.unit_dir() / f"{unit}.service").exists()
    assert not list(h.unit_dir().rglob(f"{unit}.service"))
    assert not Path(f"/proc/{pid}").exists()
    assert h.systemctl("is-active", unit).stdout.strip() == "inactive"


def test_many_parallel_sessions(host: TestHost):
    procs = [subprocess.Popen(host.ssh_argv(f"sleep 0.5; echo {i}"), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
             for i in range(12)]
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0] * 12, outs
    assert sorted(int(o.strip()) for o, _ in outs) == list(range(12))


def test_stop_host_stops_sshd(testbed: Testbed):
    h = testbed.start_host("tb-stop")
    proc = h.proc
    port = h.port
    testbed.stop_host(h)
    assert proc.poll() is not None
    assert not h.base.exists()
    cp = subprocess.run(["ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5",
                         "-p", str(port), "127.0.0.1", "true"], capture_output=True, text=True,
                        timeout=30, stdin=subprocess.DEVNULL)
    assert cp.returncode == 255 and "refused" in cp.stderr.lower()


# ------------------------------------------------------------ require-testbed plumbing

def test_unavailable_reason(monkeypatch):
    import testbed as tbmod

    monkeypatch.delenv("CAPVIEW_TESTBED_DISABLE", raising=False)
    monkeypatch.setattr(tbmod.os, "geteuid", lambda: 1000)
    assert "root" in tbmod.testbed_unavailable_reason()
    monkeypatch.setenv("CAPVIEW_TESTBED_DISABLE", "1")
    assert "CAPVIEW_TESTBED_DISABLE" in tbmod.testbed_unavailable_reason()
    monkeypatch.setattr(tbmod.shutil, "which", lambda name: None)
    monkeypatch.setattr(tbmod.os, "geteuid", lambda: 0)
    monkeypatch.delenv("CAPVIEW_TESTBED_DISABLE")
    reason = tbmod.testbed_unavailable_reason()
    assert "missing" in reason and "podman" in reason and "ssh" in reason


def _run_inner(tmp_path: Path, env_extra: dict[str, str]) -> tuple[int, str]:
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_inner.py").write_text(textwrap.dedent("""\
        import pytest

        def test_uses_host(host):
            assert False, "must not run: the testbed is disabled"

        @pytest.mark.testbed
        def test_marked_skips():
            pytest.skip("pretend something is missing")

        def test_plain_skip():
            pytest.skip("ordinary skip")

        def test_plain_pass():
            pass
        """))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAPVIEW_")}
    env.update(env_extra, PYTHONPATH=str(TESTS_DIR))
    cp = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "conftest", "-p", "no:cacheprovider",
         "--rootdir", str(tmp_path), "-c", str(tmp_path / "pytest.ini"), str(tmp_path / "test_inner.py")],
        capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path, stdin=subprocess.DEVNULL)
    return cp.returncode, cp.stdout + cp.stderr


def test_unavailable_testbed_skips_by_default(tmp_path: Path):
    rc, out = _run_inner(tmp_path, {"CAPVIEW_TESTBED_DISABLE": "1"})
    assert rc == 0, out
    assert re.search(r"\b1 passed, 3 skipped\b", out), out


def test_require_testbed_turns_skips_into_failures(tmp_path: Path):
    rc, out = _run_inner(tmp_path, {"CAPVIEW_TESTBED_DISABLE": "1", "CAPVIEW_REQUIRE_TESTBED": "1"})
    assert rc == 1, out
    # fixture skip -> setup error; marked-test skip -> failure; ordinary skip stays a skip
    assert re.search(r"\b1 failed, 1 passed, 1 skipped, 1 error\b", out), out
    assert "testbed required (CAPVIEW_REQUIRE_TESTBED=1) but unavailable" in out
    assert "skipped test marked 'testbed' under CAPVIEW_REQUIRE_TESTBED=1" in out
