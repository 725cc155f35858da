"""The notebook layer: magics, live widgets and their update stream.

Loading it makes jobs display as live job cards in a kernel (the job core knows no
widget; this installs its display hook)."""

from .. import _job
from ._widgets import job_mimebundle

_job.set_display_hook(job_mimebundle)
