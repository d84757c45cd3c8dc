#!/bin/sh
# curl: publish an event with a token your backend minted (TOKEN, role backend).
# Usage: TOKEN=... sh publish.sh app.user.bob.notifications "Your report is ready"
# (PUBLISH_URL defaults to http://127.0.0.1:8080/publish)
set -eu
curl --fail-with-body --silent --show-error -X POST "${PUBLISH_URL:-http://127.0.0.1:8080/publish}" \
  -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
  -d "{\"topic\": \"$1\", \"args\": [\"$2\"]}"
echo
