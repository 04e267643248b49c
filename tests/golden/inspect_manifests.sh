if [ -f /home/deploy/web/app/releases/v1/.capview/manifest.tsv ]; then sec m0; cat /home/deploy/web/app/releases/v1/.capview/manifest.tsv; fi
if [ -f /home/deploy/web/app/releases/v2/.capview/manifest.tsv ]; then sec m1; cat /home/deploy/web/app/releases/v2/.capview/manifest.tsv; fi
sec end
