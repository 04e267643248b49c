if [ -f /home/deploy/web/app/releases/v1/.capview/build.log ] && [ ! -L /home/deploy/web/app/releases/v1/.capview/build.log ]; then sec build; tail -c 256000 /home/deploy/web/app/releases/v1/.capview/build.log; fi
if [ -f /home/deploy/web/app/releases/v1/.capview/health.log ] && [ ! -L /home/deploy/web/app/releases/v1/.capview/health.log ]; then sec health; tail -c 256000 /home/deploy/web/app/releases/v1/.capview/health.log; fi
sec end
