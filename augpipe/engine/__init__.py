"""How a plan is executed, for every backend: the contract between the Loader
and a backend (`contract`), the reference build through the source
(`reference`), the numba and torch executors, the fused JPEG pass, fork safety."""
