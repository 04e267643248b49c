if grep -q 0123456789abcdef /home/deploy/web/app/.capview/lock/owner.json 2>/dev/null; then
rm -rf /home/deploy/web/app/.capview/lock
fi
