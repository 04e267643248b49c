M='@@cv-0000000000000000'
mark() { printf '%s %s\n' "$M" "$*"; }
sec() { printf '\n%s %s\n' "$M" "$*"; }
cv_list() ( cd "$1" && find . -mindepth 1 \( -path ./.capview -prune \) -o -printf '%y\0%m\0%s\0%l\0%P\0' )
cv_hash() ( cd "$1" && { find . -path ./.capview -prune -o -type f -print0 | xargs -0 -r sha256sum -z -- 2>/dev/null || true; } )
export LC_ALL=C
cd /home/deploy/web/app
cur=$(readlink current 2>/dev/null || true); n=${cur#releases/}
case $cur in releases/*) ;; *) sec nocurrent; sec end; exit 0 ;; esac
case $n in ""|.|..|*/*|*[!A-Za-z0-9._+-]*|[!A-Za-z0-9]*) sec nocurrent; sec end; exit 0 ;; esac
r=releases/$n
sec version "$n"
if [ -L "$r" ] || [ ! -d "$r" ]; then sec missing; sec end; exit 0; fi
if [ ! -f "$r/.capview/manifest.tsv" ]; then sec nomanifest; sec end; exit 0; fi
sec manifest; cat "$r/.capview/manifest.tsv"
if [ -f "$r/.capview/built.list" ] && [ -f "$r/.capview/built.sha" ]; then
  sec built_list; cat "$r/.capview/built.list"; sec built_sha; cat "$r/.capview/built.sha"
fi
sec list; cv_list "$r"
sec sha; cv_hash "$r"
sec end
