"""Tools on top of everything: `show` (a PNG grid of a policy) and `bench`
(throughput tables). Nothing but the CLI imports them."""
