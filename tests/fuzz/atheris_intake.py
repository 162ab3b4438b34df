"""Coverage-guided fuzzing of the whole intake path with atheris (libFuzzer), on demand.

Starts from the real-sender fixtures in ``tests/data/mail``; every input must end
applied, ignored or held with a named reason, never in the catch-all processing
failure. Run for as long as you like (``pip install atheris`` first):

    python tests/fuzz/atheris_intake.py -max_total_time=600 tests/data/mail

The same property is checked by ``tests/service/test_fuzz_intake.py`` with hypothesis in CI.
"""

from __future__ import annotations

import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import atheris  # type: ignore[import-not-found]

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

with atheris.instrument_imports():
    from gateway.service import processing
    from gateway.store.intake import Envelope, IntakeState
    from tests.peers.corpus_site import LOCAL, corpus_database

NOW = datetime(2026, 6, 1, 8, 0, tzinfo=timezone.utc)
DB = corpus_database(Path(tempfile.mkdtemp(prefix="reefknot-fuzz-")), NOW)


def test_one_input(data: bytes) -> None:
    receipt = processing.ingest_message(DB, data, Envelope("erin@baz.example", LOCAL, "ingest"), NOW)
    if receipt.reason == "processing-failed":
        raise AssertionError(f"intake {receipt.intake_id}: processing failed on this input")
    if receipt.state is not IntakeState.DONE and not receipt.reason:
        raise AssertionError(f"intake {receipt.intake_id}: {receipt.state.value} without a reason")


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
