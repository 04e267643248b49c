( cd /home/deploy/web/app && ./bin/stop )
( cd /home/deploy/web/app && ./bin/start )
( cd /home/deploy/web/app && tail -n 50 log/app.log ) 2>&1 | tail -n 200 || true
cv_health() (
  code=ok
  ( cd /home/deploy/web/app && ./bin/status ) >/dev/null 2>&1 || code=not-running
  mark health "$code"
  [ "$code" = ok ]
)
