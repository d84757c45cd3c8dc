"""``python -m authenticator``: mint, check and explain, with the router's own configuration."""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path

import click

from authenticator.config.node_checks import check_node
from authenticator.config.node_config import component_extra, find_component, read_node_config, router_url
from authenticator.config.settings import DEFAULT_EXTRA, ConfigError, Settings, key_sources, load_settings
from authenticator.contract import COMPONENT_CLASS, REVOKE
from authenticator.core.keys import KeyConfigError, load_hmac_secret
from authenticator.core.policy import ACTIONS, MATCHES
from authenticator.core.reasons import Rejected
from authenticator.core.tokens import TokenVerifier, user_claims


def _settings(cbdir: str, *, generate_secret: bool = False) -> Settings:
    """The router's settings, keys resolved exactly as the router resolves them (environment
    variable first, then the secret file); says on stderr where the keys came from, because a
    JWT_SECRET in this shell that differs from the router's is the usual cause of a CLI that
    accepts what the router refuses."""
    path = Path(cbdir)
    try:
        settings = load_settings(component_extra(path / "config.json"), path, generate_secret=generate_secret)
    except ConfigError as error:
        raise click.ClickException(f"configuration: {error}") from error
    click.echo(f"keys: {key_sources(settings)}", err=True)
    return settings


cbdir_option = click.option(
    "--cbdir",
    default=lambda: os.environ.get("CROSSBAR_DIR", ".crossbar"),
    show_default=".crossbar",
    help="The Crossbar node directory whose config.json configures the authenticator.",
)


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
@cbdir_option
def token(sub, roles, ttl, kid, jti, extra_claims, cbdir) -> None:
    """Print a token signed with the configured shared secret."""
    settings = _settings(cbdir, generate_secret=True)
    try:
        key = settings.keys.signing_key(kid)
    except ValueError as error:
        raise click.ClickException(str(error)) from error
    claims = user_claims(sub, [r for r in roles.split(",") if r], ttl, jti=jti)
    for item in extra_claims:
        name, _, value = item.partition("=")
        try:
            claims[name] = json.loads(value)
        except json.JSONDecodeError:
            claims[name] = value
    click.echo(key.sign(claims))


@main.command()
@click.argument("token", required=False)
@cbdir_option
def decode(token, cbdir) -> None:
    """Verify TOKEN (or stdin) as the router would, and print its claims or the refusal."""
    token = token if token is not None else sys.stdin.read().strip()
    try:
        identity = TokenVerifier(_settings(cbdir)).verify(token)
    except Rejected as rejection:
        click.echo(f"REFUSED {rejection.reason.uri}\n{rejection.message}", err=True)
        sys.exit(1)
    click.echo(f"ACCEPTED authid={identity.authid} role={identity.role} roles={','.join(identity.roles)}")
    click.echo(json.dumps(dict(identity.claims), indent=2, sort_keys=True))


@main.command()
@click.option("--authid", default=None, help="The session's authid.")
@click.option("--role", default=None, help="The session's role (or give --token).")
@click.option("--token", "token_value", default=None, help="Take authid and roles from this token.")
@click.option(
    "--match",
    type=click.Choice(MATCHES),
    default="exact",
    show_default=True,
    help="The subscription or registration's match policy.",
)
@click.argument("action", type=click.Choice(ACTIONS))
@click.argument("uri")
@cbdir_option
def explain(authid, role, token_value, match, action, uri, cbdir) -> None:
    """Say whether ACTION on URI is allowed, which step and rule decided, and if it is cacheable."""
    settings = _settings(cbdir)
    roles: tuple[str, ...] = ()
    if token_value:
        try:
            identity = TokenVerifier(settings).verify(token_value)
        except Rejected as rejection:
            raise click.ClickException(f"the token would be refused: {rejection}") from rejection
        authid, role, roles = identity.authid, identity.role, identity.roles
    if not role:
        raise click.UsageError("give --role (and --authid), or --token")
    decision = settings.policy.decide(
        authrole=role, authid=authid, action=action, uri=uri, match=match, session_roles=roles
    )
    click.echo(f"{'ALLOW' if decision.allow else 'DENY'} {action} {match} '{uri}' for authid={authid} role={role}")
    click.echo(f"decided at step {decision.step}: {decision.reason}")
    click.echo(
        f"cacheable by Crossbar: {'yes' if decision.cacheable else 'no'}"
        + ("; publisher/caller disclosed" if decision.disclose else "")
    )
    sys.exit(0 if decision.allow else 1)


@main.command()
@click.option("--authid", default=None, help="Revoke every token of this user issued until now.")
@click.option("--jti", default=None, help="Revoke the one token with this jti.")
@click.option("--url", default=None, help="The router's WebSocket URL (default: from config.json).")
@click.option(
    "--token",
    "admin_token",
    default=None,
    envvar="AUTHENTICATOR_ADMIN_TOKEN",
    help="A token allowed to call authenticator.revoke (default: one minted with the configured secret).",
)
@click.option("--role", default="admin", show_default=True, help="The role of the minted admin token.")
@cbdir_option
def revoke(authid, jti, url, admin_token, role, cbdir) -> None:
    """Revoke on a running router: live sessions covered end now, later logins are refused."""
    if not authid and not jti:
        raise click.UsageError("give --authid or --jti")
    config_file = Path(cbdir) / "config.json"
    try:
        url = url or router_url(config_file)
    except ConfigError as error:
        raise click.ClickException(str(error)) from error
    if admin_token is None:
        settings = _settings(cbdir)
        admin_token = settings.keys.signing_key().sign(user_claims("authenticator-cli", [role], 60))
    kwargs = {k: v for k, v in (("authid", authid), ("jti", jti)) if v}
    from authenticator.ops.wamp_call import call_once

    try:
        answer = call_once(url, admin_token, REVOKE, **kwargs)
    except RuntimeError as error:
        raise click.ClickException(str(error)) from error
    click.echo(f"revoked {kwargs}; live sessions ended: {answer['sessions_ended']}")


@main.command()
@click.option("--config", "config_name", default="config.json", show_default=True,
              help="The node config file in the node directory, as given to crossbar start --config.")  # fmt: skip
@cbdir_option
def check(config_name, cbdir) -> None:
    """Check the node config and the authenticator's configuration as the router does at start,
    without starting it: one line per problem, exit status 1 if there is any (for CI)."""
    path = Path(cbdir) / config_name
    try:
        config = read_node_config(path)
    except (OSError, ValueError) as error:
        raise click.ClickException(f"cannot read {path}: {type(error).__name__}: {error}") from error
    found = find_component(config)
    if found is None:
        raise click.ClickException(f"{path}: no router worker has a component with classname {COMPONENT_CLASS}")
    extra = dict(found[3].get("extra", {}))
    try:
        settings = load_settings(extra, Path(cbdir), generate_secret=None)
    except ConfigError as error:
        click.echo(f"{path}: the authenticator component's extra: {error}", err=True)
        sys.exit(1)
    except Exception as error:  # noqa: BLE001 - a value of a type no check foresaw: still one line
        click.echo(f"{path}: the authenticator component's extra: unreadable ({type(error).__name__})", err=True)
        sys.exit(1)
    problems = check_node(config, settings.policy.roles)
    for problem in problems:
        click.echo(problem.line(path), err=True)
    if problems:
        sys.exit(1)
    click.echo(f"OK {path}: roles {', '.join(settings.policy.roles)}; keys: {key_sources(settings)}")


@main.command()
@cbdir_option
def secret(cbdir) -> None:
    """Print the development secret (the shared-secret key's file, generated first if there is
    none) as a shell line for your application: export JWT_SECRET=... . A router started without
    that variable in its environment uses exactly this; one started with it uses the variable."""
    path = Path(cbdir)
    try:
        specs = component_extra(path / "config.json").get("keys", DEFAULT_EXTRA["keys"])
    except ConfigError as error:
        raise click.ClickException(f"configuration: {error}") from error
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
@cbdir_option
def proxy_config_command(proxies, internal_port, cbdir) -> None:
    """Print the scale-out node config (proxy workers in front of the router) derived from config.json."""
    from authenticator.config.proxy_profile import proxy_config

    path = Path(cbdir) / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise click.ClickException(f"cannot read {path}: {error}") from error
    click.echo(json.dumps(proxy_config(config, proxies, internal_port), indent=4))


@main.command("production-config")
@click.option("--origin", "origins", multiple=True, default=["https://app.example.com"], show_default=True,
              help="An origin whose pages may open the WebSocket (repeat for several).")  # fmt: skip
@click.option("--port", type=click.IntRange(1, 65535), default=8080, show_default=True)
@click.option("--interface", default="127.0.0.1", show_default=True,
              help="127.0.0.1 behind a reverse proxy; 0.0.0.0 with --tls-key/--tls-certificate.")  # fmt: skip
@click.option("--tls-key", help="The TLS private key file (PEM), relative to the node directory.")
@click.option("--tls-certificate", help="The TLS certificate file (PEM), relative to the node directory.")
@click.option("--static", "static_directory", help="A directory of pages to serve at /, relative to the node dir.")
@cbdir_option
def production_config_command(origins, port, interface, tls_key, tls_certificate, static_directory, cbdir) -> None:
    """Print the production node config (no demo, explicit keys, origins, metrics on loopback)
    derived from config.json."""
    from authenticator.config.production_profile import production_config

    if bool(tls_key) != bool(tls_certificate):
        raise click.UsageError("give both --tls-key and --tls-certificate, or neither")
    path = Path(cbdir) / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise click.ClickException(f"cannot read {path}: {error}") from error
    tls = {"key": tls_key, "certificate": tls_certificate} if tls_key else None
    try:
        derived = production_config(config, origins=tuple(origins), port=port, interface=interface, tls=tls,
                                    static_directory=static_directory)  # fmt: skip
    except ValueError as error:
        raise click.UsageError(str(error)) from None
    click.echo(json.dumps(derived, indent=4))
