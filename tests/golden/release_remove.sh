rm -rf /home/deploy/web/app/releases/v2
