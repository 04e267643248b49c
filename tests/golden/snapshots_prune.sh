base=/home/deploy/web/app/shared/.snapshots
[ -d "$base" ] || exit 0
keep=$(cat)
restores=$(ls -1 "$base" | grep "^_restore-[0-9]*$" | sort -t- -k2 -n | tail -n 4)
for d in "$base"/*; do
  [ -d "$d" ] || continue
  t=${d##*/}
  if printf "%s\n%s\n" "$keep" "$restores" | grep -qxF -- "$t"; then continue; fi
  rm -rf -- "$d" && printf "@pruned %s\n" "$t"
done
