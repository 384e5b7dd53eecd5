"""Export a training run to a deployable format: one module per format plus the FORMATS table.

```python
from fractalad_edge.export import ExportOptions, export_model
export_model("runs/bottle", format="openvino", out="models/bottle-ov", options=ExportOptions(precision="fp16"))
```
Importing this package imports no torch; the exporters import it when they run.
"""

from fractalad_edge._lazy import lazy_exports

# imported on first use, so the import-light submodules (defaults) stay light for the CLI
_LAZY = {
    "FORMATS": "fractalad_edge.export.formats",
    "FormatSpec": "fractalad_edge.export.formats",
    "check_export_request": "fractalad_edge.export.formats",
    "ExportOptions": "fractalad_edge.export.pipeline",
    "export_model": "fractalad_edge.export.pipeline",
}
__getattr__, __dir__ = lazy_exports(__name__, _LAZY)

__all__ = ["FORMATS", "ExportOptions", "FormatSpec", "check_export_request", "export_model"]
