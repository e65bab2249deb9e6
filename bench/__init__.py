"""The benchmark of the operations issue (`make bench`): the governed paths measured side by
side with bare baselines on the same machine, in one run. Never imported by the portal."""
