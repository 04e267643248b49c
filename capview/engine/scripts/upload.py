"""The upload's scripts. They live beside the tar stream they unpack (engine/upload.py)
and the rsync path (engine/rsync_upload.py), issue 13's files, and are re-exported here
so every phase's script is found under scripts/. (The link-shared script is
shared_links.py's, the check after the build verify.py's: scripts/release.py uses them.)"""

from capview.engine.rsync_upload import write_manifest_script
from capview.engine.upload import part_script, upload_and_link, upload_script

__all__ = ["part_script", "upload_and_link", "upload_script", "write_manifest_script"]
