"""`subtool fetch`: the official checkpoints and data sets (subtool/mlperf/assets.py), downloaded, verified and
installed into the cache where `subtool run` finds them (store.py), or brought in from a mirror."""
