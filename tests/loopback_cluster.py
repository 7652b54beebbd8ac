"""A two-node Ray cluster on the loopback for the tests: ``python loopback_cluster.py``.

A head node and a second node, each with one CPU and its own processes (GCS and raylet; raylet), all on 127.0.0.1,
started the way Ray's own tests start theirs (``ray.cluster_utils.Cluster``). Prints one JSON line,
``{"address": "127.0.0.1:PORT", "second_raylet": PID}``, then holds the cluster until its stdin closes.

Every process (this one, the nodes, a driver) needs the same ``RAY_AUTH_MODE=token`` and ``RAY_AUTH_TOKEN``, as on
a real cluster, and ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``: without it Ray replaces 127.0.0.1 in an address by the
machine's network address, where nothing listens.
"""

import json
import sys

from ray.cluster_utils import Cluster


def main() -> None:
    loopback = {"node_ip_address": "127.0.0.1", "num_cpus": 1}
    cluster = Cluster(initialize_head=True, head_node_args={**loopback, "include_dashboard": False})
    try:
        second = cluster.add_node(**loopback)
        (raylet,) = second.all_processes["raylet"]
        print(json.dumps({"address": cluster.gcs_address, "second_raylet": raylet.process.pid}), flush=True)
        sys.stdin.read()
    finally:
        cluster.shutdown()


if __name__ == "__main__":
    main()
