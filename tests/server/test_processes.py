"""Background run records: what list_processes shows."""

from __future__ import annotations

from eventkit.server.processes import MAX_PROCESSES, Processes


def test_records_and_their_description() -> None:
    """A new record is queued; its description has the agent's fields."""
    processes = Processes()
    process = processes.new("job", "python")
    assert process is processes.get(process.process_id)
    described = process.describe()
    assert {
        "process_id": process.process_id,
        "execution_id": process.process_id,
        "name": "job",
        "status": "queued",
        "language": "python",
        "start_time": None,
        "end_time": None,
        "exit_code": None,
        "pid": None,
    } == described
    process.status, process.start_time, process.end_time = "completed", 10.0, 12.5
    described = process.describe()
    assert (2.5, "1970-01-01T00:00:10Z") == (
        described["duration"],
        described["start_time"].replace(".000000", ""),
    )


def test_old_finished_records_are_forgotten() -> None:
    """Past the bound, the oldest finished records go first; running ones stay."""
    processes = Processes()
    running = processes.new(None, "bash", "sleep 9")
    for _ in range(MAX_PROCESSES - 1):
        processes.new(None, "python").status = "completed"
    newest = processes.new(None, "python")
    assert MAX_PROCESSES == len(processes)
    assert running is processes.get(running.process_id)
    assert newest is processes.get(newest.process_id)
    assert "sleep 9" == running.describe()["command"]
