rel=/home/deploy/web/app/releases/v1
if [ -L "$rel" ] || [ ! -d "$rel" ]; then sec missing; exit 0; fi
root=$(cd -P "$rel" && pwd -P)
t=/home/deploy/web/app/releases/v1/static/css
if [ ! -d "$t" ]; then sec notfound; exit 0; fi
real=$(cd -P "$t" && pwd -P)
case $real in "$root"|"$root"/*) ;; *) sec escapes; exit 0 ;; esac
name=''
sec list
cd "$real"
find . -mindepth 1 -maxdepth 1 -printf '%y\0%s\0%m\0%P\0%l\0'
sec end
