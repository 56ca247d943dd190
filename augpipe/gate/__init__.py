"""augpipe.gate: a teacher decides, per sample, how hard the augmentation may be.

- Online: `TeacherGate` scores every augmented batch with a teacher and falls
  back to a weaker view, drops or re-weights the hard samples; `CapFeedback`
  writes per-sample caps back to the planner.
- Offline: `DifficultyTable` scores every sample at every magnitude once;
  its caps are loaded into a loader (`augpipe score`, `augpipe show --caps`).
- Per op: `augpipe report` measures the teacher's accuracy under each op at
  each magnitude; `limits_from_report` turns it into per-op limits for
  `policy.with_limits(...)`.

The gate builds on the core (Loader.render, Batch.ops/.mags, the caps);
`import augpipe` does not import it (`ap.TeacherGate` etc. load it lazily).
"""
from .control import RandomGate
from .online import CapFeedback, TeacherGate
from .report import limits_from_report
from .table import DifficultyTable

__all__ = ["CapFeedback", "DifficultyTable", "RandomGate", "TeacherGate", "limits_from_report"]
