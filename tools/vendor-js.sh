#!/bin/sh
# Re-vendor the JavaScript libraries the HTML reports inline, from the npm
# registry, checked against the tarball's sha256.  Not run by make: the files
# are committed (reports/html_assets/vendor/), so installing stprof needs no
# network; run this by hand to upgrade, then update the version and digest.
#   uPlot: small (50 KB) time-series/bar charts, MIT, canvas-based.
set -eu
cd "$(dirname "$0")/../reports/html_assets/vendor"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

vendor() {  # package version sha256 dist-file out-file
    (cd "$work" && npm pack --silent "$1@$2" >/dev/null)
    echo "$3  $work/$1-$2.tgz" | sha256sum -c --quiet -
    tar xzf "$work/$1-$2.tgz" -C "$work"
    {
        echo "/*! $1 $2, from the npm registry package $1@$2 ($4); see tools/vendor-js.sh"
        sed 's/\*\//* \//g' "$work/package/LICENSE"
        echo "*/"
        cat "$work/package/$4"
    } > "$5"
    rm -rf "$work/package"
}

vendor uplot 1.6.32 4b8a8191e425658e3ea8c8c1314b0fc679c861ee3a1af2b20c7b16ba50b5133d \
    dist/uPlot.iife.min.js uPlot.iife.min.js
(cd "$work" && tar xzf uplot-1.6.32.tgz)
{ echo "/*! uPlot 1.6.32 (MIT, see uPlot.iife.min.js) */"; cat "$work/package/dist/uPlot.min.css"; } > uPlot.min.css
