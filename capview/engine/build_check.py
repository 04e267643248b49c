"""The deploy's own check after the build (issue 13), folded into the link+build script:
the previous release's shared files still have the inode, size, mode and mtime recorded
at upload; and no file of the new release names another release by absolute path
(``<deploy_path>/releases/<v>/``). With a build, the release as built is recorded for
``capview verify`` (verify.py). The script: engine/scripts/verify.py ``after_build_script``.
"""

from __future__ import annotations

from dataclasses import dataclass

from capview.engine.layout import is_version
from capview.engine.manifest import Entry

@dataclass(frozen=True)
class AfterBuild:
    """What the check after the build found (deploy.py turns it into failure / warnings)."""

    changed: tuple[str, ...] = ()  # previous-release files written in place (content differs)
    changed_count: int = 0
    touched: tuple[str, ...] = ()  # only their mtime moved, content identical: a warning
    references: tuple[tuple[str, str], ...] = ()  # (other release, path in this release)


def parse_after_build(markers: dict[str, list[str]], entries: dict[str, Entry],
                      inherited: tuple[tuple[str, str], ...] = ()) -> AfterBuild:
    """Host text is untrusted: names failing is_version are dropped; a "touched" claim
    only stands when the hash equals the manifest's."""
    changed, touched = [], []
    for value in markers.get("shared_changed", []):
        parts = value.split(" ", 2)
        if len(parts) != 3:
            continue
        kind, digest, path = parts
        e = entries.get(path)
        if kind == "m" and e is not None and e.type == "f" and digest == e.digest:
            touched.append(path)
        else:
            changed.append(path)
    counts = [int(v) for v in markers.get("shared_count", []) if v.strip().isdigit()]
    count = max((counts[-1] if counts else 0) - len(touched), len(changed)) if changed else 0
    refs: list[tuple[str, str]] = list(inherited)
    for value in markers.get("xref", []):
        other, _, path = value.partition(" ")
        if is_version(other) and path and (other, path) not in refs:
            refs.append((other, path))
    return AfterBuild(tuple(changed), count, tuple(touched), tuple(refs))


def inherited_references(prev_meta: dict | None, kept: set[str], version: str) -> tuple[tuple[str, str], ...]:
    """The previous release's recorded references whose file this release shares."""
    refs = prev_meta.get("references") if isinstance(prev_meta, dict) else None
    out = []
    for r in refs if isinstance(refs, list) else ():
        if isinstance(r, dict) and is_version(str(r.get("release"))) and r.get("path") in kept \
                and r["release"] != version:
            out.append((r["release"], r["path"]))
    return tuple(out)


def references_by_release(refs: tuple[tuple[str, str], ...]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for other, path in refs:
        out.setdefault(other, []).append(path)
    return out


def judge_after_build(found: AfterBuild, version: str, previous: str | None, env: str,
                      host: str) -> tuple[list[str], tuple[str, str] | None]:
    """(warnings, (failure, hint) or None) for the deploy."""
    warnings = [references_warning(version, found.references)] if found.references else []
    if found.touched:
        warnings.append(f"the build touched {len(found.touched)} file(s) shared with releases/{previous} "
                        f"(mtime only, content unchanged), e.g. {found.touched[0]}")
    if not found.changed:
        return warnings, None
    return warnings, (
        f"the build changed {found.changed_count} file(s) of releases/{previous} in place "
        f"(e.g. {found.changed[0]}): {previous} no longer matches its manifest",
        f"check it with capview verify {env} {previous} --host {host} and redeploy it; a build must write "
        "new files (or replace one by rename), or list the file in upload.writable")


def references_warning(version: str, refs: tuple[tuple[str, str], ...]) -> str:
    parts = []
    for other, files in references_by_release(refs).items():
        more = f" and {len(files) - 1} more" if len(files) > 1 else ""
        parts.append(f"releases/{other}/ (in {files[0]}{more})")
    return (f"{version} references another release by absolute path: {'; '.join(parts)} - it breaks when that "
            "release is pruned (prune keeps it while this one is retained); build with paths inside the release "
            "or under current/")
