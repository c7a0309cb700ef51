"""The ``openvino`` package, imported without its usage telemetry.

``import openvino`` loads ``openvino.tools.ovc``, which, through the ``openvino-telemetry``
package (a dependency of the wheel), sends an "import" event to Google Analytics from a
forked process, and writes a client id under ``~/intel``, unless a consent file there says
no or ``CI=true``. A server must not phone home on each start, nor fork from a threaded
process; OpenVINO's converter falls back to a no-op stub where ``openvino_telemetry``
cannot be imported, so that is how tei-ort imports it.
"""

from __future__ import annotations

import sys
from types import ModuleType

TELEMETRY_MODULE = "openvino_telemetry"


def import_openvino() -> ModuleType:
    """``openvino``, with ``openvino_telemetry`` unimportable when it is first loaded.

    Raises ImportError when the package is missing. A process that imported
    ``openvino_telemetry`` itself before keeps it.
    """
    if "openvino" not in sys.modules and TELEMETRY_MODULE not in sys.modules:
        # a None entry makes `import openvino_telemetry` raise ImportError (the import
        # system's documented way to block a module); ovc then uses its stub
        sys.modules[TELEMETRY_MODULE] = None  # type: ignore[assignment]
    import openvino

    module: ModuleType = openvino
    return module
