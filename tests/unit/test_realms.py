"""Several realms on one node: a token bound to its realm, the settings that say how, the node
checks between the realms' components, and the CLI's --realm (docs/configuration.md#several-realms)."""

from __future__ import annotations

import copy
import json

import pytest
from click.testing import CliRunner

from authenticator.config.node_checks import check_node
from authenticator.config.settings import ConfigError, load_settings
from authenticator.core.reasons import Reason, Rejected
from authenticator.core.tokens import TokenVerifier, claimed_realms
from authenticator.ops.cli import main
from tests.support.router import REPO
from tests.support.tokens import TEST_SECRET, mint
from tests.unit.conftest import NOW

A, B = "tenant-a", "tenant-b"


def verifier_for(extra, tmp_path, realm: str, realms=(A, B), **claims) -> TokenVerifier:
    key_file = tmp_path / "secret.key"
    key_file.write_text(TEST_SECRET)
    key_file.chmod(0o600)
    extra = {**extra, "keys": [{"algorithms": ["HS256"], "secret_file": key_file.name}],
             "claims": {**extra["claims"], **claims}}  # fmt: skip
    settings = load_settings(extra, tmp_path, generate_secret=False, realm=realm, node_realms=realms)
    return TokenVerifier(settings, clock=lambda: NOW)


def refused(verifier: TokenVerifier, token: str) -> Rejected:
    with pytest.raises(Rejected) as caught:
        verifier.verify(token)
    return caught.value


def token(**claims) -> str:
    return mint("alice", ["user"], now=NOW, **claims)


def test_on_a_node_with_several_realms_aud_must_name_the_realm(shipped_extra, tmp_path):
    on_b = verifier_for(shipped_extra, tmp_path, B)
    assert on_b.settings.claims.realm_claim == "aud"
    assert on_b.verify(token(aud=B)).authid == "alice"
    assert on_b.verify(token(aud=["other-api", B])).authid == "alice"  # one of its audiences
    wrong = refused(on_b, token(aud=A))
    assert (wrong.reason, wrong.detail) == (Reason.WRONG_REALM, f"its aud names '{A}'; this is realm '{B}'")
    missing = refused(on_b, token())
    assert (missing.reason, missing.detail) == (Reason.MISSING_CLAIM, f"'aud' (the realm the token is for, here '{B}')")


def test_a_configured_audience_and_the_realm_are_both_checked(shipped_extra, tmp_path):
    on_a = verifier_for(shipped_extra, tmp_path, A, audience=["my-api"])
    assert on_a.verify(token(aud=["my-api", A])).authid == "alice"
    assert refused(on_a, token(aud=A)).reason is Reason.INVALID_AUDIENCE  # the configured audience is still required
    assert refused(on_a, token(aud="my-api")).reason is Reason.WRONG_REALM


def test_a_token_that_names_two_realms_of_the_node_is_refused_on_both(shipped_extra, tmp_path):
    both = token(aud=[A, B])
    for realm in (A, B):
        rejection = refused(verifier_for(shipped_extra, tmp_path, realm), both)
        assert rejection.reason is Reason.WRONG_REALM
        assert "a token is for one realm" in rejection.detail
    # another audience beside the realm is no other realm of this node
    assert verifier_for(shipped_extra, tmp_path, A).verify(token(aud=[A, "tenant-z"])).authid == "alice"


def test_the_operator_may_bind_by_a_claim_of_their_own(shipped_extra, tmp_path):
    on_b = verifier_for(shipped_extra, tmp_path, B, realm_claim="tenant")
    assert on_b.verify(token(tenant=B)).authid == "alice"
    assert refused(on_b, token(tenant=A)).detail == f"its 'tenant' is '{A}'; this is realm '{B}'"
    assert refused(on_b, token(tenant=[B])).detail == f"its 'tenant' is a list; this is realm '{B}'"
    assert refused(on_b, token(aud=B)).reason is Reason.MISSING_CLAIM
    # names from the token are shown cut and without control characters
    long = refused(on_b, token(tenant="x\n" * 100)).detail
    assert "\n" not in long and len(long) < 120


def test_one_realm_binds_nothing_unless_told(shipped_extra, tmp_path):
    alone = verifier_for(shipped_extra, tmp_path, "realm1", realms=("realm1",))
    assert alone.settings.claims.realm_claim is None
    assert alone.verify(token()).authid == "alice"
    told = verifier_for(shipped_extra, tmp_path, "realm1", realms=("realm1",), realm_claim="aud")
    assert refused(told, token()).reason is Reason.MISSING_CLAIM


def test_several_realms_cannot_turn_the_binding_off(shipped_extra, tmp_path):
    with pytest.raises(ConfigError, match="'claims.realm_claim' cannot be null: this node serves the realms "
                                          f"{A}, {B}"):  # fmt: skip
        verifier_for(shipped_extra, tmp_path, A, realm_claim=None)
    with pytest.raises(ConfigError, match="'claims.realm_claim' must be \"aud\" or the name of a claim"):
        verifier_for(shipped_extra, tmp_path, A, realm_claim="sub")


def test_the_realm_a_token_names_is_read_only_from_a_bounded_well_formed_token():
    assert claimed_realms(token(aud=[A, B]), "aud", 8192) == (A, B)
    assert claimed_realms(token(tenant=B), "tenant", 8192) == (B,)
    assert claimed_realms(token(aud=A), "aud", 10) == ()  # over the bound: not even decoded
    for hostile in (None, 42, "", "a.b", "a.b.c", "x.e30.y", "x." + "W10" + ".y", token(aud=[1, {}])):
        assert claimed_realms(hostile, "aud", 8192) == ()


# -- node checks -------------------------------------------------------------------------------


def two_realm_node(edit=None) -> dict:
    config = json.loads((REPO / ".crossbar" / "config.json").read_text())
    router = config["workers"][0]
    realm, component = router["realms"][0], router["components"][0]
    router["realms"], router["components"] = [], []
    for name in (A, B):
        router["realms"].append({**copy.deepcopy(realm), "name": name})
        extra = {**copy.deepcopy(component["extra"]), "store": {"sqlite": f"tokens-{name}.sqlite"}}
        router["components"].append({**copy.deepcopy(component), "realm": name, "extra": extra})
    if edit:
        edit(router)
    return config


def messages(config, realm=A) -> list[str]:
    roles = [r["name"] for r in config["workers"][0]["components"][0]["extra"]["policy"]["roles"]]
    return [p.line("config.json") for p in check_node(config, roles, realm)]


def test_two_realms_each_with_its_component_and_store_pass_the_checks():
    assert messages(two_realm_node(), A) == []
    assert messages(two_realm_node(), B) == []


def test_two_realms_sharing_a_sqlite_token_store_are_refused_and_sharing_redis_is_not():
    def share(store):
        def edit(router):
            for component in router["components"]:
                component["extra"]["store"] = dict(store)

        return edit

    lines = messages(two_realm_node(share({})))
    assert lines == [f"config.json: workers[0].components[1].extra.store: realm '{B}' shares its token store "
                     f"(sqlite tokens.sqlite) with realm '{A}': a revocation or a used token of one would count in "
                     "the other; give each realm its own SQLite file (or use Redis, which realms may share: their "
                     "keys are kept apart)"]  # fmt: skip
    assert messages(two_realm_node(share({"redis_url": "redis://127.0.0.1:6379/0"}))) == []


def test_on_a_node_with_several_realms_every_redis_name_carries_the_realm():
    from authenticator.core.redis_url import realm_namespace
    from authenticator.core.settings import ClaimRules
    from authenticator.server.redis_history import RedisHistory
    from authenticator.server.redis_idempotency import RedisIdempotency
    from authenticator.server.redis_presence import RedisPresence
    from authenticator.server.store import RedisStore

    assert realm_namespace(ClaimRules(realm="realm1", node_realms=("realm1",))) == ""  # one realm: keys unchanged
    assert realm_namespace(ClaimRules(realm=A, node_realms=(A, B))) == f"realm:{A}:"
    braces = realm_namespace(ClaimRules(realm="a{b}", node_realms=("a{b}", B)))
    assert braces.startswith("realm:h-") and "{" not in braces  # a brace would change a key's hash tag

    class Client:
        def register_script(self, script):
            return script

    store = RedisStore("redis://127.0.0.1:1/0", namespace=f"realm:{A}:")
    assert (store.PREFIX, store.STREAM) == (f"crossbar-jwt:realm:{A}:", f"crossbar-jwt:realm:{A}:revocations")
    assert RedisStore("redis://127.0.0.1:1/0").STREAM == "crossbar-jwt:revocations"
    assert RedisHistory(Client(), clock=None, namespace=f"realm:{A}:")._prefix == f"crossbar-jwt:realm:{A}:history:"
    presence = RedisPresence(Client(), node="n", ttl_seconds=1, namespace=f"realm:{A}:")
    assert presence._prefix == f"crossbar-jwt:realm:{A}:presence:"
    keys = RedisIdempotency(Client(), window_seconds=1, url_shown="-", namespace=f"realm:{A}:")
    assert (keys._key_prefix, keys._budget_prefix) == (f"crossbar-jwt:realm:{A}:idempotency:",
                                                       f"crossbar-jwt:realm:{A}:idempotency-budget:")  # fmt: skip


def test_a_realm_with_two_components_and_a_fixed_authenticator_realm_are_refused():
    def second(router):
        router["components"].append(copy.deepcopy(router["components"][0]))
        router["transports"][0]["paths"]["ws"]["auth"]["ticket"]["authenticator-realm"] = A

    lines = messages(two_realm_node(second))
    assert any(f"workers[0].components[2].realm: realm '{A}' has a second authenticator component" in line
               for line in lines)  # fmt: skip
    assert any("ws.auth.ticket.authenticator-realm: this node has several realms" in line for line in lines)


# -- the CLI -------------------------------------------------------------------------------------


@pytest.fixture
def node_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("JWT_SECRET", TEST_SECRET)

    def only_b_may(router):
        user = next(r for r in router["components"][1]["extra"]["policy"]["roles"] if r["name"] == "user")
        user["rules"].append({"uri": "app.tenant.", "match": "prefix", "allow": {"subscribe": True}})

    (tmp_path / "config.json").write_text(json.dumps(two_realm_node(only_b_may)))
    (tmp_path / "users.json").write_text((REPO / ".crossbar" / "users.json").read_text())
    return str(tmp_path)


def run(*args):
    return CliRunner().invoke(main, list(args))


def test_the_cli_asks_for_the_realm_and_uses_that_realms_keys_and_policy(node_dir):
    asked = run("explain", "--role", "user", "--authid", "alice", "subscribe", "app.tenant.x", "--cbdir", node_dir)
    assert asked.exit_code == 1
    assert f"serves the realms {A}, {B}: pass --realm to choose one" in asked.output
    on_a = run("explain", "--realm", A, "--role", "user", "--authid", "alice", "subscribe", "app.tenant.x",
               "--cbdir", node_dir)  # fmt: skip
    on_b = run("explain", "--realm", B, "--role", "user", "--authid", "alice", "subscribe", "app.tenant.x",
               "--cbdir", node_dir)  # fmt: skip
    assert (on_a.exit_code, on_b.exit_code) == (1, 0)
    minted = run("token", "--realm", B, "--sub", "alice", "--cbdir", node_dir).output.strip().splitlines()[-1]
    assert run("decode", minted, "--realm", B, "--cbdir", node_dir).exit_code == 0
    wrong = run("decode", minted, "--realm", A, "--cbdir", node_dir)
    assert wrong.exit_code == 1 and "REFUSED authenticator.error.wrong_realm" in wrong.output
    nowhere = run("decode", minted, "--realm", "tenant-c", "--cbdir", node_dir)
    assert f"has no authenticator component for realm 'tenant-c'; it serves {A}, {B}" in nowhere.output
    checked = run("check", "--cbdir", node_dir)
    assert checked.exit_code == 0, checked.output
    assert f"realm {A}:" in checked.output and f"realm {B}:" in checked.output


# -- derived configs ------------------------------------------------------------------------------


def test_the_scale_out_derivation_routes_every_realm_and_the_production_one_changes_every_component():
    from authenticator.config.production_profile import production_config
    from authenticator.config.proxy_profile import PROXY_AUTHENTICATOR_ROLE, proxy_config

    scaled = proxy_config(two_realm_node(), 2)
    router, proxies = scaled["workers"][0], scaled["workers"][1:]
    for realm in router["realms"]:
        assert PROXY_AUTHENTICATOR_ROLE in [r["name"] for r in realm["roles"]], realm["name"]
    for proxy in proxies:
        assert sorted(proxy["routes"]) == [A, B]
        for realm in (A, B):
            clients = {r["name"] for r in two_realm_node()["workers"][0]["realms"][0]["roles"]} - {"authenticator"}
            assert set(proxy["routes"][realm]) == clients | {PROXY_AUTHENTICATOR_ROLE}
    assert [c["extra"]["session"]["behind_proxies"] for c in router["components"]] == [True, True]
    assert messages(scaled, A) == [] and messages(scaled, B) == []

    production = production_config(two_realm_node())
    extras = [c["extra"] for c in production["workers"][0]["components"]]
    assert [(e["generate_secret"], e["anonymous_role"], "issuer" in e) for e in extras] == [(False, None, False)] * 2


def test_cluster_config_refuses_a_node_with_several_realms_saying_what_to_do():
    from authenticator.config.cluster import refusals

    lines = refusals(two_realm_node())
    assert lines[0].startswith(f"the node serves the realms {A}, {B}: cluster-config links one realm")


def test_a_realm_authorized_by_the_authenticator_without_a_component_of_its_own_is_refused():
    def third(router):
        router["realms"].append({**copy.deepcopy(router["realms"][0]), "name": "tenant-c"})

    lines = messages(two_realm_node(third))
    assert any("workers[0].realms[2]: realm 'tenant-c' has roles authorized by 'authenticator.authorize' "
               "(anonymous, " in line and 'add one with "realm": "tenant-c"' in line
               for line in lines), lines  # fmt: skip


def test_the_worker_wide_check_compares_the_values_in_effect():
    def default_spelled_out(router):
        router["components"][1]["extra"].setdefault("limits", {})["hello_timeout_seconds"] = 10  # the default

    assert messages(two_realm_node(default_spelled_out)) == []
