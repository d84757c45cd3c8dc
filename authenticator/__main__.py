try:
    from authenticator.ops.cli import main
except ModuleNotFoundError as missing:  # pip install crossbar-jwt: the kit alone
    raise SystemExit(
        f"python -m authenticator needs the router's packages ({missing.name} is not installed): "
        "pip install 'crossbar-jwt[router]'"
    ) from None

main(prog_name="python -m authenticator")
