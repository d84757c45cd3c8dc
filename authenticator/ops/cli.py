"""``python -m authenticator``: mint, check and explain, with the router's own configuration (the node
config `crossbar start` reads: every command takes its --cbdir and --config)."""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
from pathlib import Path

import click

from authenticator.config.key_files import load_hmac_secret
from authenticator.config.node_checks import check_node
from authenticator.config.node_config import (
    authenticator_component,
    authenticator_realms,
    crossbar_config_file,
    deprecated_path_lines,
    extra_place,
    find_components,
    load_node_config,
    websocket_url,
)
from authenticator.config.settings import DEFAULT_EXTRA, ConfigError, Settings, key_sources, load_settings
from authenticator.contract import REVOKE
from authenticator.core.keys import KeyConfigError
from authenticator.core.minting import realm_binding, user_claims
from authenticator.core.policy import ACTIONS, MATCHES
from authenticator.core.reasons import Rejected
from authenticator.core.tokens import TokenVerifier


def _node_config(cbdir: str, config_name: str | None) -> tuple[Path, dict]:
    """The node config file `crossbar start --cbdir CBDIR [--config NAME]` reads, and what it says."""
    path = crossbar_config_file(Path(cbdir), config_name)
    try:
        return path, load_node_config(path)
    except ConfigError as error:
        raise click.ClickException(f"configuration: {error}") from error


def _derivable_node_config(cbdir: str, config_name: str | None) -> tuple[Path, dict]:
    """A node config the profiles can derive from: one with the authenticator component."""
    path, config = _node_config(cbdir, config_name)
    try:
        authenticator_component(config, path)
    except ConfigError as error:
        raise click.ClickException(f"configuration: {error}") from error
    return path, config


def _extra(cbdir: str, config_name: str | None, realm: str | None = None) -> dict:
    path, config = _node_config(cbdir, config_name)
    try:
        return dict(authenticator_component(config, path, realm).get("extra", {}))
    except ConfigError as error:
        raise click.ClickException(f"configuration: {error}") from error


def _settings(cbdir: str, config_name: str | None, *, generate_secret: bool = False, realm: str | None = None
              ) -> Settings:  # fmt: skip
    """The settings of the router's component (of `realm`, on a node with several), keys resolved
    exactly as the router resolves them (environment variable first, then the secret file); says on
    stderr where the keys came from, because a JWT_SECRET in this shell that differs from the
    router's is the usual cause of a CLI that accepts what the router refuses."""
    path, config = _node_config(cbdir, config_name)
    try:
        component = authenticator_component(config, path, realm)
        settings = load_settings(dict(component.get("extra", {})), Path(cbdir), generate_secret=generate_secret,
                                 realm=component.get("realm"), node_realms=authenticator_realms(config))  # fmt: skip
    except ConfigError as error:
        raise click.ClickException(f"configuration: {error}") from error
    realms = authenticator_realms(config)
    click.echo(f"keys: {key_sources(settings)}" + (f"; realm: {component.get('realm')}" if len(realms) > 1 else ""),
               err=True)  # fmt: skip
    return settings


# token, decode and explain: which realm's keys, claim rules and policy (docs/configuration.md#several-realms).
realm_option = click.option(
    "--realm", default=None, help="The realm whose keys, claims and policy apply (required on a node with several)."
)


def node_options(command):
    """--cbdir and --config, the two options of `crossbar start` that say which node config it reads."""
    command = click.option(
        "--config",
        "config_name",
        default=None,
        metavar="FILE",
        help="The node config file in the node directory, as crossbar start --config takes it (JSON, or YAML "
        "for .yaml).  [default: Crossbar's own choice: config.yaml, else config.json]",
    )(command)
    return click.option(
        "--cbdir",
        default=lambda: os.environ.get("CROSSBAR_DIR", ".crossbar"),
        show_default="$CROSSBAR_DIR, else .crossbar",
        help="The Crossbar node directory, as crossbar start --cbdir takes it.",
    )(command)


@click.group()
def main() -> None:
    """Mint, check and explain tokens with the router's own configuration."""


@main.command()
@click.option("--sub", required=True, help="The user id (authid).")
@click.option("--roles", default="user", show_default=True, help="Comma-separated roles.")
@click.option("--ttl", default=300, show_default=True, type=int, help="Lifetime in seconds.")
@click.option("--kid", default=None, help="Sign with the key of this kid.")
@click.option("--jti/--no-jti", default=True, show_default=True, help="Add a unique token id.")
@click.option(
    "--claim",
    "extra_claims",
    multiple=True,
    metavar="NAME=JSON",
    help="An extra claim; the value is parsed as JSON when it can be.",
)
@realm_option
@node_options
def token(sub, roles, ttl, kid, jti, extra_claims, realm, cbdir, config_name) -> None:
    """Print a token signed with the configured shared secret (for the realm, on a node with several)."""
    settings = _settings(cbdir, config_name, generate_secret=True, realm=realm)
    try:
        key = settings.keys.signing_key(kid)
    except ValueError as error:
        raise click.ClickException(str(error)) from error
    claims = {**user_claims(sub, [r for r in roles.split(",") if r], ttl, jti=jti), **realm_binding(settings.claims)}
    for item in extra_claims:
        name, _, value = item.partition("=")
        try:
            claims[name] = json.loads(value)
        except json.JSONDecodeError:
            claims[name] = value
    click.echo(key.sign(claims))


@main.command()
@click.argument("token", required=False)
@realm_option
@node_options
def decode(token, realm, cbdir, config_name) -> None:
    """Verify TOKEN (or stdin) as the router would (on the realm), and print its claims or the refusal."""
    token = token if token is not None else sys.stdin.read().strip()
    try:
        identity = TokenVerifier(_settings(cbdir, config_name, realm=realm)).verify(token)
    except Rejected as rejection:
        click.echo(f"REFUSED {rejection.reason.uri}\n{rejection.message}", err=True)
        sys.exit(1)
    click.echo(f"ACCEPTED authid={identity.authid} role={identity.role} roles={','.join(identity.roles)}")
    click.echo(f"grants: {len(identity.grants) or 'none'}")
    for grant in identity.grants:
        click.echo(f"  {grant.label}, grantable by {grant.rule.label}")
    click.echo(json.dumps(dict(identity.claims), indent=2, sort_keys=True))


@main.command()
@click.option("--authid", default=None, help="The session's authid.")
@click.option("--role", default=None, help="The session's role (or give --token).")
@click.option("--token", "token_value", default=None, help="Take authid, roles and grants from this token.")
@click.option("--caps", "caps", default=None, metavar="JSON",
              help='The session\'s grants, as a token\'s caps claim carries them: \'[{"uri": "app.doc.42", "match": '
              '"exact", "allow": ["subscribe"]}]\' (checked against the policy\'s grantable rules).')  # fmt: skip
@click.option(
    "--match",
    type=click.Choice(MATCHES),
    default="exact",
    show_default=True,
    help="The subscription or registration's match policy.",
)
@click.argument("action", type=click.Choice(ACTIONS))
@click.argument("uri")
@realm_option
@node_options
def explain(authid, role, token_value, caps, match, action, uri, realm, cbdir, config_name) -> None:
    """Say whether ACTION on URI is allowed (on --realm), which step, rule or grant decided, and if it is cacheable."""
    settings = _settings(cbdir, config_name, realm=realm)
    roles: tuple[str, ...] = ()
    grants: tuple = ()
    if token_value and caps is not None:
        raise click.UsageError("give --caps or --token (a token's grants are its caps claim), not both")
    if token_value:
        try:
            identity = TokenVerifier(settings).verify(token_value)
        except Rejected as rejection:
            raise click.ClickException(f"the token would be refused: {rejection}") from rejection
        authid, role, roles, grants = identity.authid, identity.role, identity.roles, identity.grants
    if not role:
        raise click.UsageError("give --role (and --authid), or --token")
    if caps is not None:
        grants = _explained_grants(settings, caps, role, authid)
    decision = settings.policy.decide(
        authrole=role, authid=authid, action=action, uri=uri, match=match, session_roles=roles, grants=grants
    )
    click.echo(f"{'ALLOW' if decision.allow else 'DENY'} {action} {match} '{uri}' for authid={authid} role={role}")
    click.echo(f"decided at step {decision.step}: {decision.reason}")
    click.echo(
        f"cacheable by Crossbar: {'yes' if decision.cacheable else 'no'}"
        + ("; publisher/caller disclosed" if decision.disclose else "")
    )
    sys.exit(0 if decision.allow else 1)


def _explained_grants(settings: Settings, caps: str, role: str, authid: str | None) -> tuple:
    """--caps as the router would admit it in a token of this role and authid."""
    from authenticator.core.grants import read_grants

    if not authid:
        raise click.UsageError("--caps needs --authid (a grant's {authid} is the session's)")
    try:
        value = json.loads(caps)
    except json.JSONDecodeError as error:
        raise click.UsageError(f"--caps is not JSON: {error}") from None
    try:
        return read_grants(value, claim=settings.claims.caps_claim, policy=settings.policy, roles=(role,),
                           authid=authid, max_uri_length=settings.limits.max_uri_length)  # fmt: skip
    except Rejected as rejection:
        raise click.ClickException(f"a token with these grants would be refused: {rejection}") from rejection


@main.command()
@click.option("--authid", default=None, help="Revoke every token of this user issued until now.")
@click.option("--jti", default=None, help="Revoke the one token with this jti.")
@click.option("--url", default=None,
              help="The router's WebSocket URL, ws://host[:port]/path or wss://host[:port]/path; without a port, 80 "
              "for ws and 443 for wss.  [default: the node config's first WebSocket path]")  # fmt: skip
@click.option("--realm", default=None, help="The realm to join.  [default: the authenticator component's realm]")
@click.option("--ca-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="wss: trust only the CA certificates in this PEM file (a private CA) to sign the router's "
              "certificate.  [default: the system's trusted CAs; the certificate is always verified]")  # fmt: skip
@click.option(
    "--token",
    "admin_token",
    default=None,
    envvar="AUTHENTICATOR_ADMIN_TOKEN",
    help="A token allowed to call authenticator.revoke (default: one minted with the configured secret).",
)
@click.option("--role", default="admin", show_default=True, help="The role of the minted admin token.")
@node_options
def revoke(authid, jti, url, realm, ca_file, admin_token, role, cbdir, config_name) -> None:
    """Revoke on a running router: live sessions covered end now, later logins are refused."""
    if not authid and not jti:
        raise click.UsageError("give --authid or --jti")
    if url is None or realm is None:  # with --url, --realm and --token no node directory is needed
        path, config = _node_config(cbdir, config_name)
        url = url or websocket_url(config)
        if url is None:
            raise click.ClickException(f"configuration: {path} has no websocket path; pass --url")
        if realm is None:
            try:
                realm = authenticator_component(config, path).get("realm")
            except ConfigError as error:
                raise click.ClickException(f"configuration: {error}; pass --realm") from error
    if admin_token is None:
        settings = _settings(cbdir, config_name)
        admin_token = settings.keys.signing_key().sign(user_claims("authenticator-cli", [role], 60))
    kwargs = {k: v for k, v in (("authid", authid), ("jti", jti)) if v}
    from authenticator.ops.wamp_call import call_once

    try:
        answer = call_once(url, admin_token, REVOKE, realm=realm, kwargs=kwargs, ca_file=ca_file)
    except RuntimeError as error:
        raise click.ClickException(str(error)) from error
    click.echo(revoke_answer(kwargs, answer))


def revoke_answer(revoked: dict, answer: dict) -> str:
    """The router's answer to authenticator.revoke, a line each: what was revoked, up to when the
    user's tokens are refused (its next token must be issued after it), how many live sessions ended."""
    lines = ["revoked: " + " ".join(f"{name}={value}" for name, value in revoked.items())]
    answer = dict(answer)
    until = answer.pop("tokens_issued_until", None)
    if isinstance(until, int | float):
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(until))
        lines.append(f"tokens issued until: {when} (Unix {until:.3f}); the user's next token must be issued after it")
    lines.append(f"live sessions ended: {answer.pop('sessions_ended', '?')}")
    lines += [f"{name}: {value}" for name, value in sorted(answer.items())]  # what a newer router adds
    return "\n".join(lines)


@main.command()
@node_options
def check(cbdir, config_name) -> None:
    """Check the node config and the authenticator's configuration as the router does at start,
    without starting it: one line per problem, exit status 1 if there is any (for CI)."""
    path, config = _node_config(cbdir, config_name)
    components = [found[3] for found in find_components(config)]
    if not components:
        try:
            authenticator_component(config, path)  # says what is missing
        except ConfigError as error:
            raise click.ClickException(f"configuration: {error}") from error
    realms = authenticator_realms(config)
    checked, problems = [], []
    for component in components:  # one per realm
        realm = component.get("realm")
        where = extra_place(path, realm, realms)
        try:
            settings = load_settings(dict(component.get("extra", {})), Path(cbdir), generate_secret=None, realm=realm,
                                     node_realms=realms)  # fmt: skip
        except ConfigError as error:
            click.echo(f"{where}: {error}", err=True)
            sys.exit(1)
        except Exception as error:  # noqa: BLE001 - a value of a type no check foresaw: still one line
            click.echo(f"{where}: unreadable ({type(error).__name__})", err=True)
            sys.exit(1)
        checked.append((realm, settings))
        problems += [p for p in check_node(config, settings.policy.roles, realm) if p not in problems]
    for problem in problems:
        click.echo(problem.line(path), err=True)
    if problems:
        sys.exit(1)
    for line in deprecated_path_lines(config, path):  # works in this release: a warning, not a failure
        click.echo(f"warning: {line}", err=True)
    for realm, settings in checked:
        named = f" realm {realm}:" if len(realms) > 1 else ""
        click.echo(f"OK {path}:{named} roles {', '.join(settings.policy.roles)}; keys: {key_sources(settings)}")


@main.command()
@node_options
def secret(cbdir, config_name) -> None:
    """Print the development secret (the shared-secret key's file, generated first if there is
    none) as a shell line for your application: export JWT_SECRET=... . A router started without
    that variable in its environment uses exactly this; one started with it uses the variable."""
    path = Path(cbdir)
    specs = _extra(cbdir, config_name).get("keys", DEFAULT_EXTRA["keys"])
    spec = next((k for k in specs if isinstance(k, dict) and k.get("secret_file")), None)
    if spec is None:
        raise click.ClickException("no key in the configuration has a 'secret_file' (a development secret)")
    env_name = spec.get("secret_env") or "JWT_SECRET"
    try:
        value, source, _generated = load_hmac_secret(None, path / spec["secret_file"], generate=True)
    except KeyConfigError as error:
        raise click.ClickException(str(error)) from error
    click.echo(f"keys: HS256 from {source}", err=True)
    if os.environ.get(env_name) and os.environ[env_name].encode() != value:
        click.echo(f"note: {env_name} in this shell differs from {source}: a router started from this shell "
                   f"uses {env_name}, not the file", err=True)  # fmt: skip
    click.echo(f"export {env_name}={shlex.quote(value.decode())}")


@main.command("proxy-config")
@click.option("--proxies", type=click.IntRange(1, 64), default=2, show_default=True,
              help="Proxy workers sharing the public port; one per core is a good start.")  # fmt: skip
@click.option("--internal-port", type=click.IntRange(1, 65535), default=8081, show_default=True,
              help="Loopback port where the router worker keeps the wsgi paths the proxies forward to.")  # fmt: skip
@node_options
def proxy_config_command(proxies, internal_port, cbdir, config_name) -> None:
    """Print the scale-out node config (proxy workers in front of the router) derived from the node
    config (--config)."""
    from authenticator.config.proxy_profile import proxy_config

    _path, config = _derivable_node_config(cbdir, config_name)
    click.echo(json.dumps(proxy_config(config, proxies, internal_port), indent=4))


@main.command("production-config")
@click.option("--origin", "origins", multiple=True, default=["https://app.example.com"], show_default=True,
              help="An origin whose pages may open the WebSocket, scheme://host[:port] (repeat for several): the "
              "port the pages are served from (https://app.example.com:8443); without one, the scheme's default, "
              "443 for https and 80 for http.")  # fmt: skip
@click.option("--port", type=click.IntRange(1, 65535), default=8080, show_default=True)
@click.option("--interface", default="127.0.0.1", show_default=True,
              help="127.0.0.1 behind a reverse proxy; 0.0.0.0 with --tls-key/--tls-certificate.")  # fmt: skip
@click.option("--tls-key", help="The TLS private key file (PEM), relative to the node directory.")
@click.option("--tls-certificate", help="The TLS certificate file (PEM), relative to the node directory.")
@click.option("--static", "static_directory", help="A directory of pages to serve at /, relative to the node dir.")
@node_options
def production_config_command(
    origins, port, interface, tls_key, tls_certificate, static_directory, cbdir, config_name
) -> None:
    """Print the production node config (no demo, explicit keys, origins, metrics on loopback)
    derived from the node config (--config)."""
    from authenticator.config.production_profile import production_config

    if bool(tls_key) != bool(tls_certificate):
        raise click.UsageError("give both --tls-key and --tls-certificate, or neither")
    _path, config = _derivable_node_config(cbdir, config_name)
    tls = {"key": tls_key, "certificate": tls_certificate} if tls_key else None
    try:
        derived = production_config(config, origins=tuple(origins), port=port, interface=interface, tls=tls,
                                    static_directory=static_directory)  # fmt: skip
    except ValueError as error:
        raise click.UsageError(str(error)) from None
    click.echo(json.dumps(derived, indent=4))


@main.command("cluster-config")
@click.option("--nodes", type=click.IntRange(2, 32), default=3, show_default=True, help="How many nodes.")
@click.option("--redis-url", required=True, envvar="CLUSTER_REDIS_URL",
              help="The Redis every node's component shares (store.redis_url): redis://, rediss:// or "
              "unix://.")  # fmt: skip
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Where to write one node directory per node: OUT/node-1/.crossbar/config.json, ...")  # fmt: skip
@click.option("--host", "hosts", multiple=True, default=["127.0.0.1"], show_default=True,
              help="The address the nodes' link ports listen on and are reached at: once for all nodes, or once "
              "per node (in order).")  # fmt: skip
@click.option("--link-port", type=click.IntRange(1, 65535), default=7000, show_default=True,
              help="Node 1's router link port (rawsocket, WAMP-cryptosign with the node keys); keep it off the "
              "public network.")  # fmt: skip
@click.option(
    "--first-port",
    type=click.IntRange(1, 65535),
    default=None,
    help="Node 1's public port.  [default: the config's own, 8080]",
)
@click.option("--port-step", type=click.IntRange(1, 1000), default=10, show_default=True,
              help="Node i's ports are node 1's plus (i - 1) x this (every TCP port of the config: public, "
              "internal, metrics, link).")  # fmt: skip
@click.option("--plaintext-links-on-a-private-network", "plaintext_links", is_flag=True,
              help="Accept a --host that is not loopback: the router links are plain TCP (authenticated, not "
              "encrypted), so the nodes must be joined by a private network or VPN (WireGuard).")  # fmt: skip
@node_options
def cluster_config_command(nodes, redis_url, out_dir, hosts, link_port, first_port, port_step,
                           plaintext_links, cbdir, config_name) -> None:  # fmt: skip
    """Write N node directories joined by router links in a full mesh, sharing one Redis, derived from
    the node config (--config: config.json, config-proxies.json or config-production.json); each
    with its own node key. Start each with crossbar start --cbdir OUT/node-I/.crossbar."""
    from crossbar.common.key import _maybe_generate_node_key

    from authenticator.config.cluster import (
        ClusterRefused,
        cluster_configs,
        link_exposure_refusal,
        node_addresses,
        public_port,
        refusals,
    )
    from authenticator.core.redis_url import holds_secret

    path, config = _derivable_node_config(cbdir, config_name)
    for line in refusals(config):  # before anything is written
        click.echo(f"{path}: {line}", err=True)
    if refusals(config):
        sys.exit(1)
    if not redis_url.startswith(("redis://", "rediss://", "unix://")):
        raise click.UsageError("--redis-url must be a redis://, rediss:// or unix:// URL")
    exposure = link_exposure_refusal(hosts)
    if exposure and not plaintext_links:  # before anything is written
        click.echo(exposure, err=True)
        sys.exit(1)
    try:
        offset = 0 if first_port is None else first_port - public_port(config)
        addresses = node_addresses(nodes, tuple(hosts), link_port, port_step, offset)
    except ValueError as error:
        raise click.UsageError(str(error)) from None
    source = Path(cbdir).resolve()
    keys = []
    for address in addresses:
        node_dir = out_dir / address.name / ".crossbar"
        node_dir.mkdir(parents=True, exist_ok=True)
        _maybe_generate_node_key(str(node_dir))  # Crossbar's own key files, key.priv 0600; kept if present
        keys.append(node_public_key(node_dir / "key.pub"))

    def relocate(address, name: str) -> str:  # as seen from that node's directory
        if Path(name).is_absolute():
            return name
        return os.path.relpath(source / name, (out_dir / address.name / ".crossbar").resolve())

    try:
        configs = cluster_configs(config, addresses, keys, redis_url, relocate)
    except ClusterRefused as refused:
        for line in str(refused).splitlines():
            click.echo(f"{path}: {line}", err=True)
        sys.exit(1)
    # A Redis password in the URL (userinfo or ?password=) is a secret: then every config is created
    # readable by its owner only, before a byte of it is written.
    mode = 0o600 if holds_secret(redis_url) else 0o644
    for address, node in zip(addresses, configs, strict=True):
        target = out_dir / address.name / ".crossbar" / "config.json"
        _write_new_file(target, json.dumps(node, indent=4) + "\n", mode)
        click.echo(f"{address.name}: crossbar start --cbdir {target.parent}   (port {public_port(node)}, link "
                   f"{address.host}:{address.link_port})")  # fmt: skip


def _write_new_file(target: Path, text: str, mode: int) -> None:
    """Write `text` to a new file created with `mode` (less the umask), then put it in place of
    `target`: an existing target keeps neither its old mode nor a moment of the new text under it."""
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    temporary.unlink(missing_ok=True)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        data = text.encode()
        while data:
            data = data[os.write(fd, data) :]
    finally:
        os.close(fd)
    os.replace(temporary, target)


def node_public_key(pub_file: Path) -> str:
    """The ed25519 public key (hex) of a Crossbar node key file (key.pub)."""
    for line in pub_file.read_text().splitlines():
        if line.startswith("public-key-ed25519:"):
            return line.split(":", 1)[1].strip()
    raise click.ClickException(f"{pub_file}: no public-key-ed25519 line (not a Crossbar node key file)")
