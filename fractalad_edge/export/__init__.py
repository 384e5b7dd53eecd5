"""Export a training run to a deployable format: one module per format plus the FORMATS table.

```python
from fractalad_edge.export import ExportOptions, export_model
export_model("runs/bottle", format="openvino", out="models/bottle-ov", options=ExportOptions(precision="fp16"))
```
Importing this package imports no torch; the exporters import it when they run.
"""

from fractalad_edge.export.formats import FORMATS, FormatSpec, check_export_request
from fractalad_edge.export.pipeline import ExportOptions, export_model

__all__ = ["FORMATS", "ExportOptions", "FormatSpec", "check_export_request", "export_model"]
