"""`python -m augpipe ...` and `torchrun -m augpipe ...`: the `augpipe` command."""
from .cli import main

if __name__ == "__main__":
    main()
