"""The JavaScript kit speaks the router's wire names (authenticator/contract.py): the reasons it
stops on, its constants, the procedure it calls to refresh and the authextra keys it times that
by. The kit is imported with node, not read as text, and its refresh is run against a stand-in for
AutobahnJS, so a name the kit computes or builds is checked as it is on the wire. Its TypeScript
declaration's literal types say the same."""

import json
import re
import shutil
import subprocess
import time

import pytest

from authenticator import contract
from tests.support.router import REPO

KIT = REPO / "web" / "crossbar-jwt" / "crossbar-jwt.js"
TYPES = REPO / "web" / "crossbar-jwt" / "crossbar-jwt.d.ts"

# A stand-in for AutobahnJS: one connection whose session joins with the authextra given, and whose
# call() records what the kit calls. expires_in is 0.6 s by the router's clock while exp is an hour
# away by this machine's: a kit that read `expires_in` refreshes within a second, one that timed
# by `exp` alone does not within the 5 s the script waits.
HARNESS = """
import * as kit from %(kit)s;
const extra = %(extra)s;
const tokens = [];
const finish = (result) => { console.log(JSON.stringify(result)); process.exit(0); };
setTimeout(() => finish({ refresh: null }), 5000);
class Connection {
  constructor(options) { this.options = options; }
  open() {
    const session = {
      id: 1,
      isOpen: true,
      call: async (procedure, args) => {
        finish({ refresh: { procedure, args, tokens } });
        return {};
      },
      leave() {},
    };
    queueMicrotask(async () => {
      await this.options.onchallenge(session, "ticket", {});
      this.onopen(session, { authid: "alice", authrole: "user", authextra: extra });
    });
  }
  close() {}
}
kit.connect({
  url: "ws://127.0.0.1:9/ws",
  realm: "realm1",
  autobahn: { Connection },
  getToken: async () => { tokens.push(`token-${tokens.length + 1}`); return tokens.at(-1); },
});
"""


def node(script: str) -> dict:
    if shutil.which("node") is None:
        pytest.fail("node is missing: make test installs the test dependencies")
    out = subprocess.run(["node", "--input-type=module", "-e", script], capture_output=True, text=True,
                         timeout=30, check=True)  # fmt: skip
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def js():
    """The kit's exported constants, as node imports them."""
    return node(
        f"import * as kit from {json.dumps(KIT.as_uri())};"
        "console.log(JSON.stringify({...kit, FINAL_REASONS: [...kit.FINAL_REASONS],"
        " connect: undefined, refreshDelay: undefined, retryDelay: undefined}));"
    )


def test_the_kit_stops_on_the_routers_final_reasons_and_its_own_no_token(js):
    assert set(js["FINAL_REASONS"]) == contract.FINAL_ROUTER_REASONS | {contract.NO_TOKEN}
    assert len(js["FINAL_REASONS"]) == len(set(js["FINAL_REASONS"]))


def test_the_kits_reason_constants_are_the_contracts(js):
    names = ("EXPIRED", "REFRESH_REFUSED", "NO_TOKEN", "TOKEN_UNAVAILABLE")
    assert {name: js[name] for name in names} == {name: getattr(contract, name) for name in names}
    assert js["EXPIRED"].startswith(contract.ERROR_URI_PREFIX)
    assert js["REFRESH_REFUSED"].startswith(contract.ERROR_URI_PREFIX)


# The kit's names for the recovery and presence wire names of the contract.
RECOVERY_NAMES = {
    "HISTORY_PROCEDURE": contract.HISTORY,
    "PRESENCE_PROCEDURE": contract.PRESENCE,
    "PRESENCE_TOPIC_PREFIX": contract.PRESENCE_TOPIC_PREFIX,
    "EVENT_POSITION_DETAIL": contract.EVENT_POSITION_DETAIL,
}


def test_the_kits_recovery_and_presence_names_are_the_contracts(js):
    assert {name: js[name] for name in RECOVERY_NAMES} == RECOVERY_NAMES


def test_the_kit_refreshes_by_calling_the_contracts_procedure_timed_by_the_authextra_keys():
    now = time.time()
    extra = {contract.AUTHEXTRA_EXP: now + 3600, contract.AUTHEXTRA_EXPIRES_IN: 0.6}
    result = node(HARNESS % {"kit": json.dumps(KIT.as_uri()), "extra": json.dumps(extra)})
    assert result["refresh"] is not None, "the kit did not refresh within 5 s of a token with 0.6 s left"
    assert result["refresh"]["procedure"] == contract.REFRESH
    # the token it logged in with, then a fresh one for the refresh, handed over as the only argument
    assert result["refresh"]["tokens"] == ["token-1", "token-2"]
    assert result["refresh"]["args"] == ["token-2"]


def test_the_kits_typescript_declaration_has_the_same_literal_types(js):
    declared = dict(re.findall(r'^export declare const ([A-Z_]+): "([^"]+)";$', TYPES.read_text(), re.M))
    names = ("EXPIRED", "REFRESH_REFUSED", "NO_TOKEN", "TOKEN_UNAVAILABLE")
    assert declared == {name: getattr(contract, name) for name in names} | RECOVERY_NAMES
