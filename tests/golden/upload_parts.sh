rel=/home/deploy/web/app/releases/v2; inc=/home/deploy/web/app/releases/v2/.capview/incoming
trap 'rc=$?; [ "$rc" = 0 ] || printf "%s free_kb %s\n" @@cv "$(df -Pk "$rel" 2>/dev/null | awk "NR==2 {print \$4}")"' EXIT
mkdir -p "$inc"
tar -xf - -C "$inc" --no-same-owner
n=0
for ok in "$inc/.part-1.ok" "$inc/.part-2.ok"; do
  while [ ! -e "$ok" ]; do
    [ ! -e "${ok%.ok}.failed" ] || { echo "a parallel upload part failed" >&2; exit 1; }
    n=$((n+1)); [ "$n" -lt 72000 ] || { echo "timed out waiting for the other upload parts" >&2; exit 1; }
    sleep 0.05
  done
done
prev=/home/deploy/web/app/releases/v1
find "$prev" -mindepth 1 -maxdepth 1 ! -name .capview -exec cp -al -t "$rel" {} +
(cd "$rel" && xargs -0 -r rm -rf -- < "$inc/meta/drop.nul")
if [ -d "$inc/part-1/files" ]; then cp -lR "$inc/part-1/files/." "$rel/"; fi
if [ -d "$inc/part-2/files" ]; then cp -lR "$inc/part-2/files/." "$rel/"; fi
if [ -d "$inc/files" ]; then cp -al "$inc/files/." "$rel/"; fi
{
  awk -F '\t' 'FNR==NR {d[$0]=1; next} !($5 in d)' "$inc/meta/drop.tsv" "$prev/.capview/manifest.tsv"
  cat "$inc/meta/add.tsv"
} > "$rel/.capview/manifest.tsv.tmp"
mv -f "$rel/.capview/manifest.tsv.tmp" "$rel/.capview/manifest.tsv"
rm -rf "$inc"
mkdir -p /home/deploy/web/app/releases/v2/.capview/incoming/part-1 && if tar -xf - -C /home/deploy/web/app/releases/v2/.capview/incoming/part-1 --no-same-owner; then : > /home/deploy/web/app/releases/v2/.capview/incoming/.part-1.ok; else rc=$?; : > /home/deploy/web/app/releases/v2/.capview/incoming/.part-1.failed 2>/dev/null; exit $rc; fi
