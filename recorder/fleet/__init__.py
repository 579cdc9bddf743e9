"""The recording fleet: workers on many machines take recordings from one queue.

The queue is procrastinate (https://procrastinate.readthedocs.io/), whose tables
live in the transcripts' PostgreSQL database; the ``recordings`` table holds what
the user asked for and a lease that keeps two workers off one recording. Nothing
here is imported by ``recorder --help``: the CLI imports it inside its commands.

* :mod:`recorder.fleet.connect`: the database URL as psycopg wants it.
* :mod:`recorder.fleet.recordings`: the ``recordings`` table (enqueue, list, lease).
* :mod:`recorder.fleet.queue`: the procrastinate app and the ``record`` task.
* :mod:`recorder.fleet.job`: one recording job on a worker (lease, takeover, record).
* :mod:`recorder.fleet.worker`: the long-running worker process.
"""

__all__: list[str] = []
