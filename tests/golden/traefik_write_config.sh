cfg_dir=/home/deploy/web/app/traefik
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
