"""Reads, checks and derives Crossbar node configs and the component's settings: the one node-
config reader (node_config), the checks (node_checks), the settings (settings, key_files), the
derived profiles (production_profile, proxy_profile). Imports core only.
"""
