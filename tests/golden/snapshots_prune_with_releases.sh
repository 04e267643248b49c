if [ -d /home/deploy/web/app/shared/.snapshots ]; then
  for d in /home/deploy/web/app/shared/.snapshots/*; do
    [ -d "$d" ] && [ ! -L "$d" ] || continue
    t=${d##*/}
    case "$t" in _restore-*|*.tmp) continue;; esac
    [ -d /home/deploy/web/app/releases/"$t" ] || { rm -rf -- "$d" && echo "snapshot $t pruned with its release"; }
  done
  ls -1t /home/deploy/web/app/shared/.snapshots | grep -v -e '^_restore-' -e '[.]tmp$' | tail -n +4 | while IFS= read -r t; do rm -rf -- /home/deploy/web/app/shared/.snapshots/"$t" && echo "snapshot $t pruned (data.snapshots: 3)"; done
  ls -1t /home/deploy/web/app/shared/.snapshots | grep '^_restore-[0-9]*$' | tail -n +4 | while IFS= read -r t; do rm -rf -- /home/deploy/web/app/shared/.snapshots/"$t"; done
fi
