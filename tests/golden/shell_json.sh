printf '%s%s%s\n' '{"a":1,"n":' "${n:-null}" ',"s":"it'"'"'s 100%\\"}'
printf '%s\n' '{"k":"v"}' > /p/x.json.tmp.$$ && mv -f /p/x.json.tmp.$$ /p/x.json
printf '%s\n' '{"k":"v"}' >> /p/h.jsonl
