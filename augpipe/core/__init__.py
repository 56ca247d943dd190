"""What is decided: the op table (`ops`, with its generated dispatch `opgen`),
policies, the planner (`plan`), the live knob and the Batch a plan becomes.
Imports nothing above `augpipe.kernels`."""
