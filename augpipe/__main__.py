"""`python -m augpipe ...` and `torchrun -m augpipe ...`: the `augpipe` command."""
from augpipe.cli import main

if __name__ == "__main__":
    main()
