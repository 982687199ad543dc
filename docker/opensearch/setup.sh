#!/bin/sh
# Loads Bitácora's OpenSearch side (compose service opensearch-setup; also by hand:
# OPENSEARCH=http://localhost:9200 DASHBOARDS=http://localhost:5601 sh docker/opensearch/setup.sh).
set -eu
here=$(dirname "$0")
os=${OPENSEARCH:-http://opensearch:9200}
osd=${DASHBOARDS:-http://opensearch-dashboards:5601}
wait_for() {
  n=0
  until curl -fsS -o /dev/null "$1"; do
    n=$((n + 1)); [ "$n" -lt 120 ] || { echo "$1 did not answer in 4 minutes" >&2; exit 1; }
    sleep 2
  done
}
wait_for "$os/_cluster/health"
curl -fsS -X PUT "$os/_index_template/bitacora-events" -H 'Content-Type: application/json' \
  --data-binary "@$here/index-template.json"
echo
# A policy that exists is updated in place (its seq_no and primary_term guard the write).
if meta=$(curl -fsS "$os/_plugins/_ism/policies/bitacora-events" 2>/dev/null); then
  seq=$(echo "$meta" | sed -n 's/.*"_seq_no":\([0-9]*\).*/\1/p')
  term=$(echo "$meta" | sed -n 's/.*"_primary_term":\([0-9]*\).*/\1/p')
  curl -fsS -X PUT "$os/_plugins/_ism/policies/bitacora-events?if_seq_no=$seq&if_primary_term=$term" \
    -H 'Content-Type: application/json' --data-binary "@$here/ism-policy.json"
else
  curl -fsS -X PUT "$os/_plugins/_ism/policies/bitacora-events" -H 'Content-Type: application/json' \
    --data-binary "@$here/ism-policy.json"
fi
echo
wait_for "$osd/api/status"
curl -fsS -X POST "$osd/api/saved_objects/_import?overwrite=true" -H 'osd-xsrf: true' \
  -F "file=@$here/dashboards.ndjson"
echo
