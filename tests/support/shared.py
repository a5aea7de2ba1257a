"""Where the shared Istio inputs live: `../shared` beside the repository (also in CI).

Tests read Istio's bookinfo samples, policy examples and CRD schemas from there and never copy
them into the project.
"""

from pathlib import Path

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
ISTIO = SHARED / "istio"
ISTIO_1_4 = SHARED / "istio-1.4"
BOOKINFO_NETWORKING = ISTIO / "samples" / "bookinfo" / "networking"
CRDS = ISTIO / "crds" / "crd-all.gen.yaml"
