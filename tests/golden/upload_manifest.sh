cat > /home/deploy/web/app/releases/v2/.capview/manifest.tsv.tmp && mv -f /home/deploy/web/app/releases/v2/.capview/manifest.tsv.tmp /home/deploy/web/app/releases/v2/.capview/manifest.tsv
export LC_ALL=C
cd /home/deploy/web/app/releases/v2
awk '
BEGIN { FS = "\t"; for (i = 1; i < 256; i++) ch[sprintf("%02X", i)] = sprintf("%c", i); nd = 0 }
function un(s,   o, i) { o = ""; while ((i = index(s, "%")) > 0) { o = o substr(s, 1, i - 1) ch[substr(s, i + 1, 2)]; s = substr(s, i + 3) } return o s }
function oct(s,   n, i) { n = 0; for (i = 1; i <= length(s); i++) n = n * 8 + substr(s, i, 1); return n }
function valid(p) {
  if (NF != 5 || $1 !~ /^[fdl]$/ || $2 !~ /^[0-7]+$/ || $3 !~ /^[0-9]+$/ || p == "" || substr(p, 1, 1) == "/") return 0
  if ($1 == "f" && (length($4) != 64 || $4 ~ /[^0-9a-f]/)) return 0
  if (index(p, "//") || substr(p, length(p)) == "/" || p ~ /(^|\/)\.\.?(\/|$)/) return 0
  return 1
}

$1 == "f" { p = un($5); if (valid(p) && int(oct($2) / 2) % 2 + int(oct($2) / 16) % 2 + int(oct($2) / 128) % 2) printf "%s%c./%s%c", $2, 0, p, 0 }
' /home/deploy/web/app/releases/v2/.capview/manifest.tsv | xargs -0 -r -n 2 sh -c 'cp -p -- "$2" "$2.cv-tmp" && mv -f -- "$2.cv-tmp" "$2" && chmod -- "$1" "$2"' sh
: > .capview/shared.nul; : > .capview/shared.stat
