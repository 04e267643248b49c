cd /home/deploy/web/app && CAPVIEW_LINES=7 CAPVIEW_FOLLOW=1 CAPVIEW_SINCE=today exec sh -c 'tail -n 50 log/app.log'
