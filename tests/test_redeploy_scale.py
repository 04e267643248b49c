"""issue 21's 200,000-file redeploy: what the deploy decides from the tree's size (units;
the speed itself is measured in benchmarks/, never timed here)."""

from __future__ import annotations

from capview.engine.deploy import BIG_LISTING, usage_wait


def test_the_usage_refresh_is_waited_on_only_while_it_can_end():
    assert usage_wait(0) is None and usage_wait(BIG_LISTING) is None  # small: to its end
    assert usage_wait(BIG_LISTING + 1) == usage_wait(2 * BIG_LISTING) == 1.0
    assert usage_wait(200_000 * 5) == 0.0  # it takes seconds: left to finish on the host


def test_the_hosts_merge_keeps_exactly_the_lines_the_client_would(tmp_path):
    """The upload's awk validity rule (no empty, "." or ".." component, made a regex for
    200,000-line manifests) against manifest.parse_manifest's, on hostile paths."""
    import subprocess

    from capview.engine.manifest import Entry, escape, parse_manifest
    from capview.engine.scripts.upload import MERGE_AWK

    paths = ["a", "a/b", "./a", "a/.", "a/./b", "a/../b", "..", ".", "a//b", "a/", "/a", ".a", "a..", "a/.b",
             "..a/b", "a/b..", "a\n../b", "a\n./b", "x/..\nb", "...", "a/...", "b/..\n", "\n..", ".\n", "a/\n/b"]
    text = "".join(Entry(p, "f", 0o444, 1, "0" * 64).line() + "\n" for p in paths)
    text += "f\t444\t1\t" + "0" * 64 + "\t%2E%2E/x\n" + "f\t444\t1\t" + "0" * 64 + "\ta%2F..%2Fb\n"
    (tmp_path / "prev.tsv").write_text(text)
    (tmp_path / "drop.tsv").write_text("\t\n")
    (tmp_path / "add.tsv").write_text("")
    subprocess.run(["awk", "-v", f"out={tmp_path}", "-v", f"man={tmp_path}/man", MERGE_AWK,
                    "part=drop", str(tmp_path / "drop.tsv"), "part=prev", str(tmp_path / "prev.tsv"),
                    "part=add", str(tmp_path / "add.tsv")], check=True, env={"LC_ALL": "C", "PATH": "/usr/bin:/bin"})
    kept = (tmp_path / "man").read_text()
    assert kept == "".join(e.line() + "\n" for e in parse_manifest(text).values())
    assert escape("a/b") in kept and "a/../b" not in kept
