cfg_dir=/etc/traefik/dynamic
mkdir -p "$cfg_dir"
st="$cfg_dir"/.capview-stage.$$
trap 'rm -rf "$st"' EXIT
mkdir "$st"
tar -x -f - -C "$st"
mv -f "$st/config.yml" "$cfg_dir"/app.yml
mdir=/home/deploy/web/app/shared/maintenance
mkdir -p "$mdir"
cp "$st/page.html" "$mdir"/.maintenance.html.tmp.$$
mv -f "$mdir"/.maintenance.html.tmp.$$ "$mdir"/maintenance.html
udir="${XDG_CONFIG_HOME:-$HOME/.config}/systemd/user"
mkdir -p "$udir"
cp "$st/unit" "$udir"/.capview-app-maintenance.service.tmp.$$
mv -f "$udir"/.capview-app-maintenance.service.tmp.$$ "$udir"/capview-app-maintenance.service
systemctl --user daemon-reload
systemctl --user enable --now capview-app-maintenance.service
systemctl --user restart capview-app-maintenance.service
