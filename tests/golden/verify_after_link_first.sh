(
cv_rel=/home/deploy/web/app/releases/v1; cv_meta=/home/deploy/web/app/releases/v1/.capview
export LC_ALL=C
(cd "$cv_rel" && find . -path ./.capview -prune -o -type f -links 1 -print0 | xargs -0 -r grep -laZF -e /home/deploy/web/app/releases/ -- 2>/dev/null || true) | xargs -0 -r sh -c 're=$1; v=$2; shift 2; for f; do grep -ao -e "$re" -- "$f" 2>/dev/null | sort -u | while read -r m; do o=${m%/}; o=${o##*/}; [ "$o" = "$v" ] || printf "%s xref %s %s\n" @@cv-0000000000000000 "$o" "$(printf %s "${f#./}" | tr "\001-\037\177" "[?*]")"; done; done' sh '/home/deploy/web/app/releases/[A-Za-z0-9][A-Za-z0-9._+-]*/' v1 | head -n 200
) || printf '%s warn %s\n' @@cv-0000000000000000 'the check after the build could not run completely'
