"""Connected components of the request-resource pair graph: the one place they are computed."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components


@dataclass
class ComponentLabels:
    """Component label of every request and resource; nodes without any pair have label -1."""

    request: np.ndarray
    resource: np.ndarray
    count: int


def component_labels(
    num_requests: int, num_resources: int, pair_request: np.ndarray, pair_resource: np.ndarray
) -> ComponentLabels:
    """Label the components of the bipartite graph with an edge per (request, resource) pair.

    Labels are 0..count-1 in order of each component's first request (requests without pairs
    and resources without pairs get -1). Linear in pairs: one sparse graph, no Python loop.
    """
    n, m = num_requests, num_resources
    graph = coo_matrix(
        (np.ones(len(pair_request), dtype=np.int8), (pair_request, n + pair_resource)), shape=(n + m, n + m)
    )
    _, label = connected_components(graph, directed=False)
    has_pair = np.zeros(n + m, dtype=bool)
    has_pair[pair_request] = True
    has_pair[n + pair_resource] = True
    # Renumber by first appearance among requests (then resources), -1 for isolated nodes.
    nodes = np.flatnonzero(has_pair)
    labels, first = np.unique(label[nodes], return_index=True)
    rank = np.empty(len(labels), dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(labels))
    renumbered = np.full(n + m, -1, dtype=np.int64)
    renumbered[nodes] = rank[np.searchsorted(labels, label[nodes])]
    return ComponentLabels(request=renumbered[:n], resource=renumbered[n:], count=len(labels))
