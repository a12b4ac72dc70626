#!/usr/bin/env bash
# The floor for P1: every blob of the image GET from the source and PUT to the target by curl,
# two at a time, plus the manifests. No verification, no logic: just the bytes moving.
set -euo pipefail
src=$1 dst=$2 repo=$3 tag=$4
accept='application/vnd.oci.image.index.v1+json,application/vnd.oci.image.manifest.v1+json'
index=$(curl -sf -H "Accept: $accept" "$src/v2/$repo/manifests/$tag")
children=$(echo "$index" | python3 -c 'import json,sys; print(" ".join(m["digest"] for m in json.load(sys.stdin)["manifests"]))')
blobs=""
for child in $children; do
  blobs="$blobs $(curl -sf -H "Accept: $accept" "$src/v2/$repo/manifests/$child" |
    python3 -c 'import json,sys; m=json.load(sys.stdin); print(" ".join([m["config"]["digest"]] + [l["digest"] for l in m["layers"]]))')"
done
copy_blob() {
  location=$(curl -sfi -X POST "$2/v2/$3/blobs/uploads/" | tr -d '\r' | awk 'tolower($1)=="location:"{print $2}')
  case "$location" in http*) ;; *) location="$2$location";; esac
  curl -sf "$1/v2/$3/blobs/$4" | curl -sf -X PUT -H 'Content-Type: application/octet-stream' -T - "$location&digest=$4" >/dev/null
}
export -f copy_blob
echo $blobs | tr ' ' '\n' | sort -u | xargs -P 2 -I{} bash -c "copy_blob $src $dst $repo {}"
for child in $children; do
  curl -sf -H "Accept: $accept" "$src/v2/$repo/manifests/$child" |
    curl -sf -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' --data-binary @- "$dst/v2/$repo/manifests/$child" >/dev/null
done
printf "%s" "$index" | curl -sf -X PUT -H 'Content-Type: application/vnd.oci.image.index.v1+json' --data-binary @- "$dst/v2/$repo/manifests/$tag" >/dev/null
