M='@@cv-0000000000000000'
mark() { printf '%s %s\n' "$M" "$*"; }
sec() { printf '\n%s %s\n' "$M" "$*"; }

dstats() {
  if [ "$#" -eq 0 ]; then echo "0 0"; return 0; fi
  find -H "$@" -type f -printf '%s\n' 2>/dev/null | awk '{n++; b+=$1} END {printf "%d %.0f\n", n, b}'
}

export LC_ALL=C
dp=/home/deploy/web/app
if [ ! -d "$dp" ]; then sec nodp; sec end; exit 0; fi
cd "$dp"
sec dev
stat -c %d .
sec top
find . -mindepth 1 -maxdepth 1 -printf '%y %D %P\0' 2>/dev/null || true
sec current
if [ -L current ]; then readlink current || true; fi
sec home; printf "%s\n" "${HOME:-}"
if [ -d shared ]; then sec shareddev; stat -c %d shared; fi
have=''
if [ -e data ] || [ -L data ]; then sec item 0; if [ -L data ]; then k=link; elif [ -d data ]; then k=dir; else k=file; fi; printf "%s %s\n" "$(stat -c %d -- data)" "$k"; have="$have data"; fi
if [ -e shared/data ] || [ -L shared/data ]; then sec target 0; if [ -d shared/data ] && [ ! -L shared/data ] && [ -z "$(ls -A shared/data)" ]; then echo empty; else echo used; fi; fi
if [ -e .env ] || [ -L .env ]; then sec item 1; if [ -L .env ]; then k=link; elif [ -d .env ]; then k=dir; else k=file; fi; printf "%s %s\n" "$(stat -c %d -- .env)" "$k"; have="$have .env"; fi
if [ -e shared/.env ] || [ -L shared/.env ]; then sec target 1; if [ -d shared/.env ] && [ ! -L shared/.env ] && [ -z "$(ls -A shared/.env)" ]; then echo empty; else echo used; fi; fi
if [ -e conf/app.ini ] || [ -L conf/app.ini ]; then sec item 2; if [ -L conf/app.ini ]; then k=link; elif [ -d conf/app.ini ]; then k=dir; else k=file; fi; printf "%s %s\n" "$(stat -c %d -- conf/app.ini)" "$k"; have="$have conf/app.ini"; fi
if [ -e shared/conf/app.ini ] || [ -L shared/conf/app.ini ]; then sec target 2; if [ -d shared/conf/app.ini ] && [ ! -L shared/conf/app.ini ] && [ -z "$(ls -A shared/conf/app.ini)" ]; then echo empty; else echo used; fi; fi
sec stats; eval "dstats $have"
sec dbs; if [ -n "$have" ]; then eval "{ find -H $have -type f \( -name '*.db' -o -name '*.sqlite' -o -name '*.sqlite3' -o -name '*.db3' \) -print0 2>/dev/null || true; }"; fi
sec sqlite3; command -v sqlite3 || true
f=$(systemctl --user show -p FragmentPath --value app.service 2>/dev/null || true)
if [ -n "$f" ] && [ -f "$f" ]; then sec unitpath; printf "%s\n" "$f"; if [ -w "$f" ] && [ -w "$(dirname -- "$f")" ]; then sec unitwritable; fi; sec unit; cat -- "$f"; fi
sec end
