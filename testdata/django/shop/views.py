"""Views of krait's test shop. Each is a plain function; importing this module
does nothing but define them (no queries, no cache access)."""
import asyncio
import hashlib
import os
import sys
import threading
import time

import django
from django.core.cache import cache
from django.db import connection
from django.db.models import Count, Sum
from django.http import HttpResponse, HttpResponseBadRequest, JsonResponse
from django.http import StreamingHttpResponse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from asgiref.sync import sync_to_async

from shop.models import Order

CACHE_KEY = "order-summary"


def _number(request, name, default, lo, hi):
    """Query parameter NAME as a float clamped to [lo, hi]; None if malformed."""
    raw = request.GET.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        return None
    return min(max(value, lo), hi)


def health(request):
    return HttpResponse("ok\n", content_type="text/plain")


def info(request):
    """Who served this request: lets a test map a port to a process/thread."""
    data = {
        "pid": os.getpid(),
        "thread_ident": threading.get_ident(),
        "native_id": getattr(threading, "get_native_id", lambda: None)(),
        "thread_name": threading.current_thread().name,
        "python": "%d.%d.%d" % sys.version_info[:3],
        "executable": sys.executable,
        "django": django.get_version(),
        "server": request.META.get("SERVER_SOFTWARE", ""),
        "app_name": connection.settings_dict["OPTIONS"].get("application_name"),
    }
    try:
        import mod_wsgi

        data["mod_wsgi_process_group"] = mod_wsgi.process_group
        data["mod_wsgi_application_group"] = mod_wsgi.application_group
    except ImportError:
        pass
    return JsonResponse(data)


def orders(request):
    """The newest orders with their customers: one query with a JOIN."""
    limit = _number(request, "limit", 50, 1, 1000)
    if limit is None:
        return HttpResponseBadRequest("limit must be a number\n")
    queryset = Order.objects.select_related("customer").order_by("-created", "-id")
    rows = list(queryset[: int(limit)])
    body = format_html(
        "<!doctype html><title>Orders</title><h1>{} orders</h1><table>{}</table>\n",
        len(rows),
        format_html_join(
            "\n",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (o.number, o.customer.name, o.customer.city, o.total,
                 o.created.isoformat())
                for o in rows
            ),
        ),
    )
    return HttpResponse(body)


def _stream_rows(queryset, delay, every):
    """Yields one CSV line per order, sleeping DELAY seconds every EVERY rows."""
    yield "id,number,customer_id,total,status,created\n"
    count = 0
    for order in queryset.iterator(chunk_size=500):
        count += 1
        if delay and count % every == 0:
            time.sleep(delay)
        yield "%d,%s,%d,%s,%s,%s\n" % (
            order.pk, order.number, order.customer_id, order.total,
            order.status, order.created.isoformat(),
        )
    yield "# %d rows\n" % count


def stream(request):
    """Streams every order (~20k rows). ?delay=SECONDS (default 0.01) is slept
    every ?every=N rows (default 100): about 2 s for the whole response by
    default, ?delay=0.05 makes it about 10 s."""
    delay = _number(request, "delay", 0.01, 0.0, 1.0)
    every = _number(request, "every", 100, 1, 100000)
    if delay is None or every is None:
        return HttpResponseBadRequest("delay and every must be numbers\n")
    queryset = Order.objects.all()
    return StreamingHttpResponse(
        _stream_rows(queryset, delay, int(every)), content_type="text/csv"
    )


def slow(request):
    """Waits ?s=N seconds (default 1, at most 600) inside PostgreSQL."""
    seconds = _number(request, "s", 1.0, 0.0, 600.0)
    if seconds is None:
        return HttpResponseBadRequest("s must be a number\n")
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_sleep(%s)", [seconds])
        cursor.fetchone()
    return HttpResponse("slept %g\n" % seconds, content_type="text/plain")


def cached(request):
    """A summary computed once and cached forever: it is never invalidated,
    so it goes stale as orders change (the "stale data" scenario)."""
    summary = cache.get(CACHE_KEY)
    hit = summary is not None
    if not hit:
        agg = Order.objects.aggregate(count=Count("id"), revenue=Sum("total"))
        summary = {
            "orders": agg["count"],
            "revenue": str(agg["revenue"]),
            "computed_at": timezone.now().isoformat(),
            "computed_by": os.getpid(),
        }
        cache.set(CACHE_KEY, summary, timeout=None)
    return JsonResponse(dict(summary, cache_hit=hit))


def _pg_sleep(seconds):
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_sleep(%s)", [seconds])
        cursor.fetchone()


async def _http_get(path):
    """GET PATH from KRAIT_UPSTREAM (host:port, another server of the
    stack) over asyncio streams; returns the status line."""
    host, port = os.environ["KRAIT_UPSTREAM"].rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(("GET %s HTTP/1.0\r\nHost: %s\r\n\r\n" % (path, host)).encode())
        await writer.drain()
        status = await reader.readline()
        await reader.read()
        return status.decode().strip()
    finally:
        writer.close()


async def aslow(request):
    """An async view (served by uvicorn): counts orders with the async ORM,
    waits ?db=N seconds in PostgreSQL (through sync_to_async), then makes
    an HTTP call to another server's /slow/ that takes ?http=N seconds."""
    db = _number(request, "db", 0.0, 0.0, 600.0)
    http = _number(request, "http", 0.0, 0.0, 600.0)
    if db is None or http is None:
        return HttpResponseBadRequest("db and http must be numbers\n")
    count = await Order.objects.acount()
    if db:
        await sync_to_async(_pg_sleep)(db)
    status = ""
    if http:
        status = await _http_get("/slow/?s=%g" % http)
    return JsonResponse({"orders": count, "db": db, "http": http, "upstream": status})


def cpu(request):
    """Burns ?ms=N milliseconds (default 50, at most 10000) of wall time in
    Python, hashing and adding, with no system call, database or cache: a
    CPU-bound request (attach-under-load benchmarks)."""
    ms = _number(request, "ms", 50.0, 0.0, 10000.0)
    if ms is None:
        return HttpResponseBadRequest("ms must be a number\n")
    end = time.perf_counter() + ms / 1000.0
    digest = hashlib.sha256()
    total = rounds = 0
    while True:
        for i in range(200):
            total += i * i
        digest.update(b"%d" % total)
        rounds += 1
        if time.perf_counter() >= end:
            break
    return HttpResponse("%d %s\n" % (rounds, digest.hexdigest()[:16]), content_type="text/plain")
