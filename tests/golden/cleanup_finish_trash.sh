for t in /home/deploy/web/app/releases/.trash-*; do
  if [ -e "$t" ] || [ -L "$t" ]; then rm -rf -- "$t" || true; fi
done
