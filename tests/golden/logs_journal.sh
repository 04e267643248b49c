journalctl --user -u app.service -n 50 --no-pager -a -o short-iso --since -10m -f | grep --line-buffered -v '^-- No entries --$' || true
journalctl --user -u app.service -n 5 --no-pager -a -o short-iso | grep --line-buffered -v '^-- No entries --$' || true
