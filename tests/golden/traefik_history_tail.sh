f=/home/deploy/web/app/.capview/history.jsonl
if [ -f "$f" ]; then tail -n 5000 "$f"; fi
