"""The JavaScript kit is an npm package: `npm pack` of web/crossbar-jwt/ gives a tarball that an
empty project installs (with AutobahnJS, its peer, from web/node_modules: no registry needed); node
imports it by its name and finds exactly the exported names; tsc --strict type-checks a program
using the whole API against the hand-written declaration, and rejects a wrong call (the
declaration is not `any`)."""

import json
import shutil
import subprocess

import pytest

from tests.support.router import REPO

PACKAGE = REPO / "web" / "crossbar-jwt"
AUTOBAHN_BROWSER = REPO / "web" / "node_modules" / "autobahn-browser"
TSC = REPO / "bench" / "node_modules" / ".bin" / "tsc"  # not in web/: the router serves web/
TSC_FLAGS = ["--noEmit", "--strict", "--module", "nodenext", "--moduleResolution", "nodenext", "--target", "es2022",
             "--lib", "es2022,dom"]  # fmt: skip

# Every name the module exports: connect, its constants and its two timing functions.
EXPORTS = {
    "connect": "function",
    "refreshDelay": "function",
    "retryDelay": "function",
    "EXPIRED": "string",
    "REFRESH_REFUSED": "string",
    "TOKEN_UNAVAILABLE": "string",
    "NO_TOKEN": "string",
    "FINAL_REASONS": "object",
    "MAX_TIMER_SECONDS": "number",
    "HISTORY_PROCEDURE": "string",
    "PRESENCE_PROCEDURE": "string",
    "PRESENCE_TOPIC_PREFIX": "string",
    "EVENT_POSITION_DETAIL": "string",
    "VERIFIED_AUTOBAHN": "string",
    "RECOVERY_KEY_PREFIX": "string",
}
SHIPPED = {"package.json", "crossbar-jwt.js", "crossbar-jwt.d.ts", "README.md"}

# A program using the whole public API as an application would; each @ts-expect-error line must be
# an error (tsc reports an unused directive otherwise), so each is a check that the types bite.
PROGRAM = """
import * as kit from "crossbar-jwt";
import {
  connect, EXPIRED, FINAL_REASONS, MAX_TIMER_SECONDS, NO_TOKEN, REFRESH_REFUSED, TOKEN_UNAVAILABLE,
  refreshDelay, retryDelay,
  type AuthExtra, type AutobahnModule, type Client, type ConnectOptions, type RetryOptions, type Session,
  type SessionDetails, type State,
  HISTORY_PROCEDURE, PRESENCE_TOPIC_PREFIX, type EventDetails, type KitSubscription, type Position, type Recovery,
} from "crossbar-jwt";

type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
// The declared values are exactly the exported ones (EXPORTED: node's list, filled in by the test).
const exact: Same<keyof typeof kit, EXPORTED> = true;
const expired: Same<typeof EXPIRED, "authenticator.error.expired"> = true;
const refused: Same<typeof REFRESH_REFUSED, "authenticator.error.refresh_refused"> = true;
const unavailable: Same<typeof TOKEN_UNAVAILABLE, "crossbar-jwt.token_unavailable"> = true;
const noToken: Same<typeof NO_TOKEN, "crossbar-jwt.no_token"> = true;
const states: Same<State, "connecting" | "connected" | "reconnecting" | "stopped"> = true;

declare const autobahn: AutobahnModule;
const retry: RetryOptions = { initial: 0.5, maximum: 1.5, growth: 1.5, jitter: 0.1 };
const delays: number[] = [refreshDelay(60), refreshDelay(60, 10), retryDelay(3), retryDelay(3, retry, Math.random),
                          MAX_TIMER_SECONDS];
const final: boolean = FINAL_REASONS.has(EXPIRED);

const options: ConnectOptions = {
  url: "wss://example.org/ws",
  realm: "realm1",
  getToken: async () => (Math.random() > 0.5 ? "a.jwt.token" : null),
  onSession: (session: Session, details: SessionDetails) => {
    const extra: AuthExtra = details.authextra ?? {};
    const roles: string[] | undefined = extra.roles;
    const left: number | null | undefined = extra.expires_in;
    session.subscribe(`app.user.${details.authid}.notifications`, ([text]) => console.log(text, roles, left));
    session.call("app.echo", [1]).then((answer) => console.log(answer));
    const id: number = session.id;
    // @ts-expect-error: a session's id is read-only
    session.id = id + 1;
  },
  onState: (state: State, client: Client) => {
    const why: string | null = client.reason;
    // @ts-expect-error: there is no state "open"
    if (state === "open") console.log(why);
  },
  onRefresh: (exp: number) => console.log(exp),
  refreshAheadSeconds: 10,
  initialRetryDelay: 0.5,
  maxRetryDelay: 1.5,
  retryDelayGrowth: 1.5,
  retryDelayJitter: 0.1,
  finalReasons: new Set([...FINAL_REASONS, REFRESH_REFUSED]),
  autobahn,
};
const client: Client = connect(options);
const anonymous: Client = connect({ url: "ws://127.0.0.1:8080/ws", realm: "realm1", getToken: null });
const state: State = client.state;
const session: Session | null = client.session;
const refreshes: number = client.refreshes;
const retrying: boolean = client.connection.isRetrying;
const topic = "app.user.alice.notifications";
const notes: KitSubscription = client.subscribe(topic, (args, kwargs, details: EventDetails) => {
  const at: Position | null = details.position;
  const missed: boolean = details.missed;
  console.log(args, kwargs, at, missed);
}, { recover: true, onRecovered: (r: Recovery) => console.log(r.recovered, r.missed, r.error), options: {} });
const kept: Position | null = notes.position;
client.subscribe(PRESENCE_TOPIC_PREFIX + "app.chat.lobby", (_args, kwargs) => console.log(kwargs.event));
client.session?.call(HISTORY_PROCEDURE, ["app.chat.lobby"], { since: kept, limit: 100 });
notes.unsubscribe().then(() => console.log("gone"));
// @ts-expect-error: recover is a boolean
client.subscribe("app.chat.lobby", () => {}, { recover: "yes" });
client.close();
// @ts-expect-error: the client's state is the kit's to change
client.state = "stopped";
// @ts-expect-error: getToken returns a token (or null), not an object
connect({ url: "ws://127.0.0.1:8080/ws", realm: "realm1", getToken: () => ({ token: "a.jwt.token" }) });
console.log(exact, expired, refused, unavailable, noToken, states, delays, final, anonymous, state, session,
            refreshes, retrying);
"""

# One wrong call, on its own: tsc must refuse it, for this reason.
WRONG = """
import { connect } from "crossbar-jwt";
connect({ url: "ws://127.0.0.1:8080/ws", realm: 1 });
"""


def run(args, cwd, check=True, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=check)


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    """npm pack's report of the tarball it made from web/crossbar-jwt/."""
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing: make test installs the test dependencies")
    destination = tmp_path_factory.mktemp("pack")
    out = run(["npm", "pack", str(PACKAGE), "--pack-destination", str(destination), "--json", "--loglevel=error"],
              cwd=destination)  # fmt: skip
    [report] = json.loads(out.stdout)
    report["tarball"] = destination / report["filename"]
    assert report["tarball"].is_file()
    return report


@pytest.fixture(scope="module")
def project(packed, tmp_path_factory):
    """An empty project that installed the tarball and AutobahnJS (its peer), nothing else."""
    if not AUTOBAHN_BROWSER.exists() or not TSC.exists():
        pytest.fail("web/node_modules or bench/node_modules is incomplete: make test installs both (npm ci)")
    project = tmp_path_factory.mktemp("app")
    (project / "package.json").write_text(json.dumps({"name": "app", "private": True, "type": "module"}))
    run(["npm", "install", "--prefer-offline", "--no-audit", "--no-fund", "--loglevel=error", str(packed["tarball"]),
         str(AUTOBAHN_BROWSER)], cwd=project, timeout=300)  # fmt: skip
    return project


def test_npm_pack_ships_the_module_its_types_and_readme_at_the_pythons_version(packed):
    assert {entry["path"] for entry in packed["files"]} == SHIPPED
    assert (packed["name"], packed["version"]) == ("crossbar-jwt", "0.1.0")
    pyproject = (REPO / "pyproject.toml").read_text()
    assert f'\nversion = "{packed["version"]}"\n' in pyproject  # one version for both kits


def test_node_imports_the_installed_package_by_its_name_and_finds_every_export(project):
    script = (
        "import * as kit from 'crossbar-jwt';"
        "import { createRequire } from 'node:module';"
        "const meta = createRequire(import.meta.url)('crossbar-jwt/package.json');"
        "console.log(JSON.stringify({ names: Object.fromEntries(Object.entries(kit).map(([k, v]) => [k, typeof v])),"
        " version: meta.version, finalIsSet: kit.FINAL_REASONS instanceof Set }));"
    )
    out = run(["node", "--input-type=module", "-e", script], cwd=project)
    found = json.loads(out.stdout)
    assert found == {"names": EXPORTS, "version": "0.1.0", "finalIsSet": True}


def test_tsc_strict_type_checks_a_program_using_the_whole_api_against_the_declaration(project):
    program = PROGRAM.replace("EXPORTED", " | ".join(f'"{name}"' for name in sorted(EXPORTS)))
    (project / "app.ts").write_text(program)
    out = run([str(TSC), *TSC_FLAGS, "app.ts"], cwd=project, check=False)
    assert out.returncode == 0, out.stdout + out.stderr


def test_tsc_rejects_a_wrong_call(project):
    (project / "wrong.ts").write_text(WRONG)
    out = run([str(TSC), *TSC_FLAGS, "wrong.ts"], cwd=project, check=False)
    assert out.returncode != 0
    errors = [line for line in out.stdout.splitlines() if "error TS" in line]
    assert errors == ["wrong.ts(3,42): error TS2322: Type 'number' is not assignable to type 'string'."], out.stdout
