"""Python imports this module at the start of every process that has this folder on its PYTHONPATH.

The derived scale-out config (authenticator/scaleout.py) sets that PYTHONPATH for Crossbar's proxy
workers only: they terminate client WebSockets and parse client bytes but load no component, so
this is the one place to harden them (authenticator/hardening.py says what and why).
"""

from authenticator.hardening import harden_worker_at_interpreter_start

harden_worker_at_interpreter_start()
