"""gunicorn settings: ``gunicorn bitrix_widget.wsgi -c gunicorn.conf.py`` (flags given on the
command line win over these). Environment: PORT, WEB_CONCURRENCY, GUNICORN_THREADS,
GUNICORN_TIMEOUT, GUNICORN_ACCESS_LOG, PROMETHEUS_MULTIPROC_DIR."""
import multiprocessing
import os
import shutil
import tempfile

bind = os.environ.get("GUNICORN_BIND") or f"0.0.0.0:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY") or multiprocessing.cpu_count() * 2 + 1)
# Threads, because a widget open spends almost all its time waiting on Bitrix24 (100-500 ms per
# call, sometimes seconds): a sync worker sits idle for the whole wait, so throughput was
# workers / latency. With threads a waiting request costs a thread, not a process; the CPU part
# still runs on every core (one GIL per process). 32 threads x 5 processes keep 160 requests in
# flight: at 200 ms per call that is 800 opens/s of waiting, above what 2 cores can render, and
# one portal may hold three quarters of them (B24_PORTAL_MAX_CALLS), the rest serve the others
# (README, Performance). Database connections do not grow with threads: see DATABASES in settings.
threads = int(os.environ.get("GUNICORN_THREADS") or 32)

# A Bitrix24 call waits at most B24_CONNECT_TIMEOUT + B24_READ_TIMEOUT (3 + 5 s), a request makes
# a few: a worker silent for longer than this is stuck and is replaced.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = 30
keepalive = 5
# Recycle workers now and then, so a slow leak never takes the service down.
max_requests = 2000
max_requests_jitter = 200

# The app writes one structured line per Bitrix24-facing request (bitrix_widget.middleware).
# gunicorn's access log is off unless asked for, and then never prints the query string
# (%(U)s is the path alone): Bitrix24 could put an ``auth=`` token there.
accesslog = "-" if os.environ.get("GUNICORN_ACCESS_LOG", "").lower() in ("1", "true", "yes") else None
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(B)s %(M)sms'
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")

# Several gunicorns on one host must not fight over one control socket; nothing here uses it.
control_socket_disable = True

# /metrics adds up every worker's values (prometheus_client multiprocess mode): each worker writes
# its own files in this directory. It must be set before any worker imports prometheus_client, and
# be emptied when the server starts (files of a previous run would be counted again).
_metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if not _metrics_dir:
    _metrics_dir = os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="prometheus-")


def on_starting(server):
    os.makedirs(_metrics_dir, exist_ok=True)
    for name in os.listdir(_metrics_dir):
        path = os.path.join(_metrics_dir, name)
        shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
