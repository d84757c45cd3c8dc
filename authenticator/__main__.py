from authenticator.ops.cli import main

main(prog_name="python -m authenticator")
