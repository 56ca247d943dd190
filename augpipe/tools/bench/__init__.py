"""`augpipe bench`: `run` measures rows in fresh processes; `loaders` builds
the torchvision baselines and augpipe's own rows; each backend's extra rows
live in a module named after it (`dali`, `ffcv`), found through `rows`."""
