M='@@cv-0000000000000000'
mark() { printf '%s %s\n' "$M" "$*"; }
sec() { printf '\n%s %s\n' "$M" "$*"; }
export LC_ALL=C
dp=/home/deploy/web/app
if [ ! -d "$dp" ]; then sec nodp; sec end; exit 0; fi
cd "$dp"
sec top
find . -mindepth 1 -maxdepth 1 -printf '%y %P\0' 2>/dev/null || true
sec current
if [ -L current ]; then readlink current || true; fi
if [ -d .capview/lock ]; then sec lock; head -c 16384 .capview/lock/owner.json 2>/dev/null || true; fi
if [ -f .capview/history.jsonl ]; then sec history; tail -n 500 .capview/history.jsonl 2>/dev/null | cut -b 1-16384 || true; fi
sec df
df -Pk . 2>/dev/null | tail -n 1 || true
if [ -d releases ]; then
  sec releasesdir
  cv_names() {
    for r in releases/*; do
      n=${r#releases/}
      case $n in [A-Za-z0-9]*) ;; *) continue ;; esac
      case $n in *[!A-Za-z0-9._+-]*) continue ;; esac
      if [ -d "$r" ] && [ ! -L "$r" ]; then printf '%s\n' "$r"; fi
    done
  }
  cv_jsons() {
    sed 's,$,/.capview/release.json,' | xargs -n 500 sh -c '[ "$#" -gt 0 ] || exit 0; find "$@" -maxdepth 0 -type f -printf "%s %p\n" 2>/dev/null || true' jsons |
    awk -v M="$M" -v max=1048576 '{f = $2; n = f; sub("^releases/", "", n); sub("/.*$", "", n); printf "\n%s json %s\n", M, n
      if ($1 > max) {fflush(); system("head -c " (max + 1) " " f " 2>/dev/null"); next}
      got = 0; while (got <= max && (getline line < f) > 0) {print line; got += length(line) + 1}
      close(f)}' 2>/dev/null || true
  }
  cv_finds() {
    sec finds
    xargs -n 500 sh -c '[ "$#" -gt 0 ] || exit 0; find "$@" \( -regex "releases/[^/]*/[.]capview" -o -regex "releases/[^/]*/[.]capview/.*" \) -printf "m %H %D:%i %n %b %s %y\n" -o -printf "a %H %D:%i %n %b %s %y\n" 2>/dev/null || true' finds
  }
  release_sums() {
    ( out=$1; xargs -n 500 sh -c '[ "$#" -gt 0 ] || exit 0; find "$@" \( -regex "releases/[^/]*/[.]capview" -o -regex "releases/[^/]*/[.]capview/.*" \) -printf "m %H %D:%i %n %b %s %y\n" -o -printf "a %H %D:%i %n %b %s %y\n" 2>/dev/null || true' sums | awk -v out="$out" 'function flush(  k, disk, app, line) { if (name != "") {disk=0; app=0; for (k in c) {if (ty[k]=="d") disk+=bl[k]*512*c[k]; else if (c[k]>=nl[k]) {disk+=bl[k]*512; if (k in seen) app+=sz[k]}} line=sprintf("%s %d %d %d %d", name, files, size, disk, app); print line; if (out != "") {print line >> out; fflush(out)}} split("", c); split("", nl); split("", bl); split("", sz); split("", ty); split("", seen); files=0; size=0; name=""} $2!=cur {flush(); cur=$2; name=substr($2, 10)} {k=$3; c[k]++; nl[k]=$4; bl[k]=$5; sz[k]=$6; ty[k]=$7; if ($1=="a" && $7=="f") {files++; if (!(k in seen)) {seen[k]=1; size+=$6}}} END {flush()}' ) || true
  }
  fpf=$(mktemp .capview/fingerprint.XXXXXX 2>/dev/null) || fpf=
  if [ -n "$fpf" ]; then ( { echo sums-2; find releases/ releases/*/.capview -maxdepth 1 -printf '%p %i %C@\n' 2>/dev/null; } | cksum > "$fpf" ) 2>/dev/null & cvf=$!; fi
  t=0; j=0
  for r in releases/.trash-*; do if [ -e "$r" ] || [ -L "$r" ]; then t=$((t+1)); fi; done
  sec trash; printf '%s\n' "$t"
  for r in releases/*; do
    [ -e "$r" ] || [ -L "$r" ] || continue
    n=${r#releases/}
    case $n in [A-Za-z0-9]*) ;; *) j=$((j+1)); continue ;; esac
    case $n in *[!A-Za-z0-9._+-]*) j=$((j+1)); continue ;; esac
    if [ -L "$r" ]; then sec link "$n"; readlink "$r" || true; continue; fi
    if [ ! -d "$r" ]; then j=$((j+1)); continue; fi
    sec rel "$n"
    if [ -e "$r/".capview/pinned ]; then sec pinned "$n"; fi
  done
  sec junk; printf '%s\n' "$j"
  if [ -n "$fpf" ]; then wait "$cvf" || :; fp0=$(cat "$fpf" 2>/dev/null) || fp0=; rm -f "$fpf"
  else fp0=$({ echo sums-2; find releases/ releases/*/.capview -maxdepth 1 -printf '%p %i %C@\n' 2>/dev/null; } | cksum); fi
  cached=
  if [ ! -d .capview/lock ] && [ -f .capview/usage.cache ] && IFS= read -r cfp < .capview/usage.cache && [ "$cfp" = "$fp0" ]; then
    cached=1; sec usage; cat .capview/usage.cache 2>/dev/null || cached=
  fi
  tmpc=
  if [ -z "$cached" ] && [ ! -d .capview/lock ] && [ -d .capview ] && [ -w .capview ]; then
    tmpc=.capview/usage.cache.$$
    trap 'rm -f "$tmpc"' EXIT
    printf '%s\n' "$fp0" > "$tmpc" 2>/dev/null || tmpc=
  fi
  cv_ms() { cvt=$(date +%s%N 2>/dev/null); case $cvt in ''|*[!0-9]*) echo 0 ;; *) echo $((cvt / 1000000)) ;; esac; }
  if [ -n "$cached" ]; then cvm=
  elif [ -z "$tmpc" ]; then cvm=full
  elif [ -n "$(find .capview -maxdepth 1 -name 'usage.cache.*' ! -path "$tmpc" -newermt '-120 seconds' 2>/dev/null | head -n 1)" ]; then cvm=busy
  else cvm=job; cvt0=$(cv_ms)
    ( trap '' HUP; cv_names | release_sums "$tmpc" >/dev/null
      if ! mkdir "$tmpc.own" 2>/dev/null; then rmdir "$tmpc.own"
      if [ -n "$tmpc" ]; then
        if [ ! -d .capview/lock ] && [ "$({ echo sums-2; find releases/ releases/*/.capview -maxdepth 1 -printf '%p %i %C@\n' 2>/dev/null; } | cksum)" = "$fp0" ]; then mv -f "$tmpc" .capview/usage.cache 2>/dev/null || rm -f "$tmpc"
        else rm -f "$tmpc"; fi
      fi
      fi ) </dev/null >/dev/null 2>&1 & cvs=$!
  fi
  cv_names | cv_jsons
  case $cvm in
  full) sec sums; cv_names | release_sums "" ;;
  busy) sec sumspart ;;
  job)
    w=0; while kill -0 "$cvs" 2>/dev/null && [ "$w" -lt 20 ] && [ $(($(cv_ms) - cvt0)) -lt 400 ]; do sleep 0.02; w=$((w+1)); done
    if mkdir "$tmpc.own" 2>/dev/null; then trap - EXIT; sec sumspart; tail -n +2 "$tmpc" 2>/dev/null || :
    else wait "$cvs" 2>/dev/null || :; rmdir "$tmpc.own"; sec sums; tail -n +2 "$tmpc" 2>/dev/null || :
    if [ -n "$tmpc" ]; then
      if [ ! -d .capview/lock ] && [ "$({ echo sums-2; find releases/ releases/*/.capview -maxdepth 1 -printf '%p %i %C@\n' 2>/dev/null; } | cksum)" = "$fp0" ]; then mv -f "$tmpc" .capview/usage.cache 2>/dev/null || rm -f "$tmpc"
      else rm -f "$tmpc"; fi
    fi
    fi ;;
  esac
fi
sec end
