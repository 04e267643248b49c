"""The upload's scripts. They live beside the tar stream they unpack (engine/upload.py)
and the rsync path (engine/rsync_upload.py) — issue 13's files, which change them —
and are re-exported here so every phase's script is found under scripts/."""

from capview.engine.rsync_upload import write_manifest_script
from capview.engine.upload import part_script, upload_script

__all__ = ["part_script", "upload_script", "write_manifest_script"]
