"""HTTP endpoints the router serves: a reusable Bearer+JSON resource (bearer_json), POST /publish
on it (publish, publisher_pool), and /metrics (metrics).
"""
