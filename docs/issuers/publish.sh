#!/bin/sh
# curl: publish an event with a token your backend minted (TOKEN, role backend).
# While the router cannot be reached (connection refused or dropped) or answers 503, it tries again,
# at most 5 attempts, waiting the 503's Retry-After or 1, 2, 4, 8 s; every attempt carries the same
# Idempotency-Key, so the router publishes it once however many attempts reach it.
# Usage: TOKEN=... sh publish.sh app.user.bob.notifications "Your report is ready"
# (PUBLISH_URL defaults to http://127.0.0.1:8080/publish)
set -eu
key=$(cat /proc/sys/kernel/random/uuid)  # one key per publication (Linux; elsewhere uuidgen)
headers=$(mktemp) && answer=$(mktemp) && trap 'rm -f "$headers" "$answer"' EXIT
attempt=1 delay=1
while :; do
  : >"$headers"
  code=0
  status=$(curl --silent --show-error --max-time 10 -D "$headers" -o "$answer" -w '%{http_code}' \
    -X POST "${PUBLISH_URL:-http://127.0.0.1:8080/publish}" \
    -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' -H "Idempotency-Key: $key" \
    -d "{\"topic\": \"$1\", \"args\": [\"$2\"]}") || code=$?
  if [ "$code" -eq 0 ] && [ "$status" != 503 ]; then
    cat "$answer" && echo
    [ "$status" = 200 ] || { echo "publish: $status" >&2; exit 1; }  # 4xx: the answer says why
    exit 0
  fi
  [ "$attempt" -lt 5 ] || { echo "publish: no answer after $attempt attempts" >&2; exit 1; }
  wait=$(sed -n 's/^[Rr]etry-[Aa]fter: *\([0-9][0-9]*\).*/\1/p' "$headers")
  wait=${wait:-$delay}
  [ "$wait" -le 30 ] || wait=30
  echo "publish: attempt $attempt failed (curl $code, HTTP $status); retrying in $wait s" >&2
  sleep "$wait"
  attempt=$((attempt + 1)) delay=$((delay * 2))
done
