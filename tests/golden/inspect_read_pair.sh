( sec side 0
rel=/home/deploy/web/app/releases/v1
if [ -L "$rel" ] || [ ! -d "$rel" ]; then sec missing; exit 0; fi
root=$(cd -P "$rel" && pwd -P)
t=/home/deploy/web/app/releases/v1/templates
if [ ! -d "$t" ]; then sec notfound; exit 0; fi
real=$(cd -P "$t" && pwd -P)
case $real in "$root"|"$root"/*) ;; *) sec escapes; exit 0 ;; esac
name=index.html
f="$real/$name"
if [ ! -e "$f" ] && [ ! -L "$f" ]; then sec absent; exit 0; fi
if [ -L "$f" ] || [ ! -f "$f" ]; then sec notfile; exit 0; fi
if [ "$(head -c 8192 "$f" | tr -d '\000' | wc -c)" -ne "$(head -c 8192 "$f" | wc -c)" ]; then sec binary; exit 0; fi
sec size
wc -c < "$f"
sec text
head -c 1000 "$f"
)
( sec side 1
rel=/home/deploy/web/app/releases/v2
if [ -L "$rel" ] || [ ! -d "$rel" ]; then sec missing; exit 0; fi
root=$(cd -P "$rel" && pwd -P)
t=/home/deploy/web/app/releases/v2/templates
if [ ! -d "$t" ]; then sec notfound; exit 0; fi
real=$(cd -P "$t" && pwd -P)
case $real in "$root"|"$root"/*) ;; *) sec escapes; exit 0 ;; esac
name=index.html
f="$real/$name"
if [ ! -e "$f" ] && [ ! -L "$f" ]; then sec absent; exit 0; fi
if [ -L "$f" ] || [ ! -f "$f" ]; then sec notfile; exit 0; fi
if [ "$(head -c 8192 "$f" | tr -d '\000' | wc -c)" -ne "$(head -c 8192 "$f" | wc -c)" ]; then sec binary; exit 0; fi
sec size
wc -c < "$f"
sec text
head -c 1000 "$f"
)
sec end
