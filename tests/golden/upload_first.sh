rel=/home/deploy/web/app/releases/v1; inc=/home/deploy/web/app/releases/v1/.capview/incoming
trap 'rc=$?; [ "$rc" = 0 ] || printf "%s free_kb %s\n" @@cv "$(df -Pk "$rel" 2>/dev/null | awk "NR==2 {print \$4}")"' EXIT
mkdir -p "$inc"
tar -xf - -C "$inc" --no-same-owner
if [ -d "$inc/files" ]; then cp -al "$inc/files/." "$rel/"; fi
{
  cat "$inc/meta/add.tsv"
} > "$rel/.capview/manifest.tsv.tmp"
mv -f "$rel/.capview/manifest.tsv.tmp" "$rel/.capview/manifest.tsv"
rm -rf "$inc"
