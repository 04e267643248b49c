M='@@cv-0000000000000000'
mark() { printf '%s %s\n' "$M" "$*"; }
sec() { printf '\n%s %s\n' "$M" "$*"; }
(
rel=/home/deploy/web/app/releases/v2; inc=/home/deploy/web/app/releases/v2/.capview/incoming; m=/home/deploy/web/app/releases/v2/.capview/incoming/meta
trap 'rc=$?; [ "$rc" = 0 ] || [ "$rc" = 7 ] || printf "%s free_kb %s\n%s free_inodes %s\n" @@cv-0000000000000000 "$(df -Pk "$rel" 2>/dev/null | awk "NR==2 {print \$4}")" @@cv-0000000000000000 "$(df -Pi "$rel" 2>/dev/null | awk "NR==2 {print \$2, \$4}")"' EXIT
mkdir -p "$inc"
tar -xpf - -C "$inc" --no-same-owner
export LC_ALL=C
prev=/home/deploy/web/app/releases/v1
: > "$m/link.nul"; : > "$m/link.expect"; : > "$m/dirs.nul"; : > "$m/modes"
awk -v out="$m" -v man="$rel/.capview/manifest.tsv.tmp" '
BEGIN { FS = "\t"; for (i = 1; i < 256; i++) ch[sprintf("%02X", i)] = sprintf("%c", i); nd = 0 }
function un(s,   o, i) { o = ""; while ((i = index(s, "%")) > 0) { o = o substr(s, 1, i - 1) ch[substr(s, i + 1, 2)]; s = substr(s, i + 3) } return o s }
function oct(s,   n, i) { n = 0; for (i = 1; i <= length(s); i++) n = n * 8 + substr(s, i, 1); return n }
function valid(p) {
  if (NF != 5 || $1 !~ /^[fdl]$/ || $2 !~ /^[0-7]+$/ || $3 !~ /^[0-9]+$/ || p == "" || substr(p, 1, 1) == "/") return 0
  if ($1 == "f" && (length($4) != 64 || $4 ~ /[^0-9a-f]/)) return 0
  if (index(p, "//") || substr(p, length(p)) == "/" || p ~ /(^|\/)\.\.?(\/|$)/) return 0
  return 1
}

function dir(p, m) { nd++; dp[nd] = p; dm[nd] = m; printf "./%s%c", p, 0 > (out "/dirs.nul") }
part == "drop" { d[$0] = 1; next }
part == "prev" {
  if ($5 in d) next
  p = un($5); if (!valid(p)) next
  print > man
  if ($1 == "d") dir(p, $2)
  else {
    printf "./%s%c", p, 0 > (out "/link.nul")
    if ($1 == "f") { if (!($2 in ox)) ox[$2] = sprintf("%x", 32768 + oct($2)); print ox[$2], $3 > (out "/link.expect") }
    else printf "a1ff %d\n", length(un($4)) > (out "/link.expect")
  }
  next
}
part == "add" { print > man; if ($1 == "d") dir(un($5), $2) }
END {
  for (i = nd; i >= 1; i--) { printf "./%s%c", dp[i], 0 > (out "/mode-" dm[i] ".nul"); if (!(dm[i] in seen)) { seen[dm[i]] = 1; print dm[i] > (out "/modes") } }
}
' part=drop "$m/drop.tsv" part=prev /home/deploy/web/app/releases/v1/.capview/manifest.tsv part=add "$m/add.tsv"
drift() {
  printf '%s drift %s %s\n' @@cv-0000000000000000 "$1" "$2"
  find "$rel" -mindepth 1 -maxdepth 1 ! -name .capview -exec rm -rf -- {} +
  find "$inc" -type d ! -perm -u+w -exec chmod u+w {} + 2>/dev/null || true
  rm -rf "$inc"; mkdir "$inc"; exit 7
}
want=$(cat "$m/manifest.sha256")
got=$(sha256sum < "$rel/.capview/manifest.tsv.tmp"); got=${got%% *}
[ "$got" = "$want" ] || drift manifest 0
if [ -s "$m/link.nul" ]; then
  (cd "$prev" && xargs -0 stat -c '%f %s %i %.9Y' -- < "$m/link.nul") > "$m/link.stat" 2>/dev/null || drift missing 0
  bad=$(awk 'NR == FNR { w[FNR] = $0; n = FNR; next } { g = $1 " " $2 } g != w[FNR] { print FNR; exit } END { if (FNR != n && !bad) print FNR + 1 }' "$m/link.expect" "$m/link.stat")
  [ -z "$bad" ] || drift changed "$bad"
fi
(cd "$rel" && xargs -0 -r mkdir -p -- < "$m/dirs.nul")
if [ -n "$prev" ]; then (cd "$prev" && xargs -0 -r -P 4 -n 8192 cp -P -l --parents -t "$rel" -- < "$m/link.nul"); fi
if [ -d "$inc/files" ]; then cp -P -lR "$inc/files/." "$rel/"; fi
(cd "$rel" && while read -r md; do xargs -0 -r chmod -- "$md" < "$m/mode-$md.nul"; done < "$m/modes")
mv -f "$rel/.capview/manifest.tsv.tmp" "$rel/.capview/manifest.tsv"
mv -f "$m/link.nul" "$rel/.capview/shared.nul"
if [ -e "$m/link.stat" ]; then mv -f "$m/link.stat" "$rel/.capview/shared.stat"; else : > "$rel/.capview/shared.stat"; fi
find "$inc" -type d ! -perm -u+w -exec chmod u+w {} + 2>/dev/null || true
rm -rf "$inc"
)
mark uploaded
{
M='@@cv-0000000000000000'
mark() { printf '%s %s\n' "$M" "$*"; }
sec() { printf '\n%s %s\n' "$M" "$*"; }
cd /home/deploy/web/app/releases/v2
refuse() { printf '%s\n' "$1" >&2; exit 9; }
if [ -L data ]; then rm -f -- data; elif [ -e data ]; then printf '%s warn %s\n' @@cv-0000000000000000 'the uploaded data was replaced by a link to shared/data'; rm -rf -- data; fi
ln -s ../../shared/data data
if [ -L .env ]; then rm -f -- .env; elif [ -e .env ]; then printf '%s warn %s\n' @@cv-0000000000000000 'the uploaded .env was replaced by a link to shared/.env'; rm -rf -- .env; fi
ln -s ../../shared/.env .env
if [ -L conf ]; then refuse 'shared path conf/app.ini: releases/v2/conf is a symlink; refusing to go through it - make conf a real directory, or list conf itself in shared.dirs'; elif [ -e conf ] && [ ! -d conf ]; then refuse 'shared path conf/app.ini: releases/v2/conf is not a directory; refusing - remove it or list conf in shared'; elif [ ! -e conf ]; then mkdir -- conf; fi
if [ -L conf/app.ini ]; then rm -f -- conf/app.ini; elif [ -e conf/app.ini ]; then printf '%s warn %s\n' @@cv-0000000000000000 'the uploaded conf/app.ini was replaced by a link to shared/conf/app.ini'; rm -rf -- conf/app.ini; fi
ln -s ../../../shared/conf/app.ini conf/app.ini
chmod 600 /home/deploy/web/app/shared/.env 2>/dev/null || true
mark linked
# building
{ cv_rc=$( { { ( cd /home/deploy/web/app/releases/v2 && podman build -t localhost/app:v2 . ) 2>&1 3>&- 4>&- && rc=0 || rc=$?; printf '%s' "$rc" >&3; } | tee /home/deploy/web/app/releases/v2/.capview/build.log >&4 3>&-; } 3>&1 ); } 4>&1
[ -z "$(tail -c 1 /home/deploy/web/app/releases/v2/.capview/build.log 2>/dev/null)" ] || echo
mark build_rc "${cv_rc:-1}"
} </dev/null
