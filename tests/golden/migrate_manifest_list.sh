M='@@cv-0000000000000000'
mark() { printf '%s %s\n' "$M" "$*"; }
sec() { printf '\n%s %s\n' "$M" "$*"; }
cd /home/deploy/web/app/releases/legacy
sec list
find . -path ./.capview -prune -o -mindepth 1 -printf '%y\0%m\0%s\0%l\0%P\0'
sec sums
find . -path ./.capview -prune -o -type f -print0 | xargs -0 -r sha256sum -z --
sec end
