"""A folder Keel puts first on a cached script job's PYTHONPATH: its ``sitecustomize`` records
the files the job's Python processes open for reading (see :mod:`keel.runtime.jobcache`)."""
