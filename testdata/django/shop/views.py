"""Views of krait's test shop. Each is a plain function; importing this module
does nothing but define them (no queries, no cache access)."""
import asyncio
import hashlib
import os
import sys
import threading
import time

import django
from django.core.cache import cache, caches
from django.db import connection
from django.db.models import Count, Sum
from django.http import HttpResponse, HttpResponseBadRequest, JsonResponse
from django.http import StreamingHttpResponse
from django.utils import timezone
from django.views.decorators.cache import cache_page
from django.utils.html import format_html, format_html_join

from asgiref.sync import sync_to_async

from shop.models import Category, Customer, Order
from shop.signals import CITIES_KEY

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


def _cache(request):
    """The cache alias ?alias= names (default: "default")."""
    return caches[request.GET.get("alias") or "default"]


def cached(request):
    """A summary computed once and cached forever: it is never invalidated,
    so it goes stale as orders change (the "stale data" scenario).
    ?delay=S waits S seconds between reading the orders and caching the
    summary (the race in which a write commits in between)."""
    cache = _cache(request)
    delay = _number(request, "delay", 0.0, 0.0, 30.0) or 0.0
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
        if delay:
            time.sleep(delay)
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


def cities(request):
    """Customers per city, cached; shop.signals deletes the entry whenever
    a customer is saved: correctly invalidated."""
    cache = _cache(request)
    data = cache.get(CITIES_KEY)
    hit = data is not None
    if not hit:
        data = {}
        for c in Customer.objects.values("city").annotate(n=Count("id")).order_by("city"):
            data[c["city"]] = c["n"]
        cache.set(CITIES_KEY, data, timeout=None)
    return JsonResponse({"cities": data, "cache_hit": hit})


def categories(request):
    """The category names, cached for an hour; nobody writes that table."""
    cache = _cache(request)
    names = cache.get("categories")
    hit = names is not None
    if not hit:
        names = [c.name for c in Category.objects.all()]
        cache.set("categories", names, timeout=3600)
    return JsonResponse({"categories": names, "cache_hit": hit})


class _Version(int):
    """An int of a class of its own, as an IntEnum is: marshal refuses it."""


def versioned(request):
    """A get (and on a miss a set) with a version that is a _Version:
    krait's agent sends the batch holding their events as JSON."""
    v = _Version(2)
    value = cache.get("versioned", version=v)
    if value is None:
        cache.set("versioned", "two", timeout=60, version=v)
    return JsonResponse({"cache_hit": value is not None})


def touch(request):
    """Writes: the first order's note and the first customer (POST only).
    The order summary cached by cached() is not invalidated; the customer
    counts are (post_save)."""
    if request.method != "POST":
        return HttpResponse("POST only\n", status=405, content_type="text/plain")
    stamp = timezone.now().isoformat()
    order = Order.objects.order_by("id").first()
    order.note = "touched " + stamp
    order.save(update_fields=["note"])
    customer = Customer.objects.order_by("id").first()
    customer.save()
    return JsonResponse({"order": order.pk, "customer": customer.pk, "at": stamp, "pid": os.getpid()})


def hooks(request):
    """What krait cache wraps, as this process has it now: every attribute
    of the cache backend classes, the database wrapper classes,
    CursorWrapper and BaseHandler (name -> the function's qualified name),
    and the threads; a test compares it before and after krait."""
    from django.conf import settings
    from django.core.handlers.base import BaseHandler
    from django.db import connections
    from django.db.backends.utils import CursorWrapper
    from django.utils.module_loading import import_string

    classes = [import_string(c["BACKEND"]) for c in settings.CACHES.values()]
    classes += [type(connections[a]) for a in settings.DATABASES]
    classes += [CursorWrapper, BaseHandler]
    out = {}
    for cls in classes:
        attrs = {}
        for k, v in sorted(vars(cls).items()):
            attrs[k] = getattr(v, "__qualname__", type(v).__name__)
        out[cls.__module__ + "." + cls.__qualname__] = attrs
    return JsonResponse({
        "pid": os.getpid(),
        "classes": out,
        "threads": sorted(t.name for t in threading.enumerate()),
    })


def cacheloop(request):
    """?n=N (default 1000, at most 100000) set+get pairs on the in-process
    cache "local"; answers the mean time per operation in microseconds, as
    measured here (what krait cache adds to each call shows in it), in
    wall time and in the process's CPU time (every thread: krait's agent
    thread, which sends the events, included)."""
    n = int(_number(request, "n", 1000, 1, 100000) or 1000)
    local = caches["local"]
    start, cpu = time.perf_counter(), time.process_time()
    for i in range(n):
        local.set("loop", i)
        local.get("loop")
    took, cpu = time.perf_counter() - start, time.process_time() - cpu
    return JsonResponse({"ops": 2 * n, "us_per_op": took / (2 * n) * 1e6,
                         "cpu_us_per_op": cpu / (2 * n) * 1e6, "pid": os.getpid()})


@cache_page(60)
def paged(request):
    """A page cached whole by cache_page for a minute (its keys name no
    view: krait cache shows the URL they stand for)."""
    return HttpResponse("%d categories\n" % Category.objects.count(), content_type="text/plain")
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
