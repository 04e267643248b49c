cat > /home/deploy/web/app/releases/v2/.capview/manifest.tsv.tmp && mv -f /home/deploy/web/app/releases/v2/.capview/manifest.tsv.tmp /home/deploy/web/app/releases/v2/.capview/manifest.tsv
