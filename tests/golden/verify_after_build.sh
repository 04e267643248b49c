(
cv_rel=/home/deploy/web/app/releases/v2; cv_meta=/home/deploy/web/app/releases/v2/.capview
export LC_ALL=C
cv_prev=/home/deploy/web/app/releases/v1
if [ -s "$cv_meta/shared.nul" ] && [ -d "$cv_prev" ]; then
  (cd "$cv_prev" && xargs -0 stat -c '%f %s %i %.9Y' -- < "$cv_meta/shared.nul") > "$cv_meta/shared.now" 2>/dev/null || true
  cv_bad=$(awk 'NR == FNR { w[FNR] = $0; n = FNR; next } $0 != w[FNR] { k = ($1 != wf(w[FNR], 1) || $2 != wf(w[FNR], 2) || $3 != wf(w[FNR], 3)) ? "c" : "m"; c++; if (c <= 20) printf "%d:%s ", FNR, k } END { if (FNR < n) { c++; printf "%d:c ", FNR + 1 } if (c) printf "#%d", c } function wf(s, i,  a) { split(s, a, " "); return a[i] }' "$cv_meta/shared.stat" "$cv_meta/shared.now")
  rm -f "$cv_meta/shared.now"
  if [ -n "$cv_bad" ]; then
    printf '%s shared_count %s\n' @@cv-0000000000000000 "${cv_bad##*#}"
    awk -v want="${cv_bad%#*}" 'BEGIN { RS = "\0"; n = split(want, a, " "); for (i = 1; i <= n; i++) { split(a[i], p, ":"); k[p[1]] = p[2] } } NR in k { printf "%s%c%s%c", k[NR], 0, $0, 0 }' "$cv_meta/shared.nul" | xargs -0 -r -n 2 sh -c 'h=$(sha256sum < "$1/$3" 2>/dev/null || echo -); printf "%s shared_changed %s %s %s\n" @@cv-0000000000000000 "$2" "${h%% *}" "$(printf %s "${3#./}" | tr "\001-\037\177" "[?*]")"' sh "$cv_prev"
  fi
fi
cv_list() ( cd "$1" && find . -mindepth 1 \( -path ./.capview -prune \) -o -printf '%y\0%m\0%s\0%l\0%P\0' )
cv_hash() ( cd "$1" && { find . -path ./.capview -prune -o -type f -print0 | xargs -0 -r sha256sum -z -- 2>/dev/null || true; } )
cv_list "$cv_rel" > "$cv_meta/built.list.tmp" && mv -f "$cv_meta/built.list.tmp" "$cv_meta/built.list"
cv_hash "$cv_rel" > "$cv_meta/built.sha.tmp" && mv -f "$cv_meta/built.sha.tmp" "$cv_meta/built.sha"
(cd "$cv_rel" && find . -path ./.capview -prune -o -type f -links 1 -print0 | xargs -0 -r grep -laZF -e /home/deploy/web/app/releases/ -- 2>/dev/null || true) | xargs -0 -r sh -c 're=$1; v=$2; shift 2; for f; do grep -ao -e "$re" -- "$f" 2>/dev/null | sort -u | while read -r m; do o=${m%/}; o=${o##*/}; [ "$o" = "$v" ] || printf "%s xref %s %s\n" @@cv-0000000000000000 "$o" "$(printf %s "${f#./}" | tr "\001-\037\177" "[?*]")"; done; done' sh '/home/deploy/web/app/releases/[A-Za-z0-9][A-Za-z0-9._+-]*/' v2 | head -n 200
) || printf '%s warn %s\n' @@cv-0000000000000000 'the check after the build could not run completely'
